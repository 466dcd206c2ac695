#!/usr/bin/env bash
# The main job, end to end, with no registry: make a cosign key pair, build a
# multi-arch eBPF image from the committed objects into a local OCI layout and
# sign it there, inspect it, verify it against the key and against a trust
# policy, and (if skopeo is installed) show that standard OCI tooling reads it.
#
#   scripts/demo.sh [OUTPUT_DIR]
#
# Loading joins this script when bpfman-load lands (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d)/xdp-counter}
keys=$(mktemp -d)
cargo build --quiet --release -p bpfman-image
bin=target/release/bpfman-image
# cosign's variable; a real pipeline takes it from its secret store.
export COSIGN_PASSWORD=demo-password

echo "== keygen: a cosign key pair in $keys"
"$bin" keygen --output-key-prefix "$keys/cosign"

echo
echo "== build and sign: one object per architecture -> signed OCI image index at $out"
"$bin" build \
	--object amd64=testdata/bpf/xdp_counter.bpfel.o \
	--object arm64=testdata/bpf/xdp_counter.bpfel.o \
	--object s390x=testdata/bpf/xdp_counter.bpfeb.o \
	--annotation org.opencontainers.image.title=xdp-counter \
	--output "oci:$out:v1" --sign-key "$keys/cosign.key" | tee "$keys/out"
ref=$(head -n1 "$keys/out")

echo
echo "== verify against the public key"
"$bin" verify --key "$keys/cosign.pub" "oci:$out:v1"

echo
echo "== verify against a host trust policy (key paths are relative to the policy)"
cat >"$keys/policy.toml" <<POLICY
[default]
rule = "reject"

[[scope]]
match = "oci:$(cd "$(dirname "$out")" && pwd -P)"
rule = "require-signature"
keys = ["cosign.pub"]
POLICY
cat "$keys/policy.toml"
"$bin" verify --policy "$keys/policy.toml" "oci:$out:v1"

echo
echo "== a key nobody trusts is refused"
"$bin" keygen --output-key-prefix "$keys/other" 2>/dev/null
if "$bin" verify --key "$keys/other.pub" "oci:$out:v1"; then
	echo "verified with the wrong key" >&2
	exit 1
fi

echo
echo "== inspect"
"$bin" inspect "oci:$out:v1"

echo
echo "== rebuild: same inputs, same digest"
again=$("$bin" build --quiet \
	--object amd64=testdata/bpf/xdp_counter.bpfel.o \
	--object arm64=testdata/bpf/xdp_counter.bpfel.o \
	--object s390x=testdata/bpf/xdp_counter.bpfeb.o \
	--annotation org.opencontainers.image.title=xdp-counter \
	--output "oci:$(mktemp -d)/again:v1")
[ "${again##*@}" = "${ref##*@}" ] && echo "identical: ${ref##*@}"

if command -v skopeo >/dev/null; then
	echo
	echo "== skopeo sees the labels"
	skopeo inspect --override-arch s390x "oci:$out:v1" | grep -E '"(Architecture|io\.ebpf\.[a-z]+)"'
fi
