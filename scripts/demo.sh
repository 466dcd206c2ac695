#!/usr/bin/env bash
# The main job, end to end, with no registry: make a cosign key pair, build a
# multi-arch eBPF image from the committed objects into a local OCI layout and
# sign it there, inspect it, verify it against the key and against a trust
# policy, and (if skopeo is installed) show that standard OCI tooling reads it.
#
#   scripts/demo.sh [OUTPUT_DIR]
#
# Then, as root, the host side: bpfman-load verifies the image against the
# same policy, loads it, attaches it to a veth in a network namespace, and
# counts pings; then unloads it and shows nothing is left.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the demo needs, checked before anything is built: as root on
# Debian or Ubuntu what is missing is installed (as .ci/run does; set
# BPFMAN_DEMO_NO_INSTALL=1 to only check), otherwise the packages to
# install are named and the demo stops.
preflight() {
	local needs=(cargo:cargo gcc:gcc)
	if [ "$(id -u)" -eq 0 ]; then
		needs+=(ip:iproute2 ping:iputils-ping bpftool:bpftool python3:python3 mount:mount)
	fi
	local missing=() pkg
	for need in "${needs[@]}"; do
		command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
	done
	((${#missing[@]})) || return 0
	if [ "$(id -u)" -eq 0 ] && [ -z "${BPFMAN_DEMO_NO_INSTALL:-}" ] && command -v apt-get >/dev/null; then
		echo "== installing what the demo needs: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
		return
	fi
	for pkg in "${missing[@]}"; do
		[ "$pkg" = cargo ] && { echo "$0: needs Rust's cargo (https://rustup.rs)" >&2; continue; }
		echo "$0: needs the $pkg package" >&2
	done
	echo "$0: install them (Debian/Ubuntu: apt-get install ${missing[*]/cargo/}) and run it again" >&2
	exit 1
}
preflight

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

echo
echo "== on a host: verify against the policy, load, attach XDP to a veth, count pings"
if [ "$(id -u)" -ne 0 ]; then
	echo "(skipped: loading into the kernel needs root; run the demo as root to see it)"
	exit 0
fi
cargo build --quiet --release -p bpfman-load
host=$(mktemp -d)
mkdir "$host/bpf"
ns=bpfman-demo-$$
finish() {
	ip netns del "$ns" 2>/dev/null || true
	ip netns del "$ns-peer" 2>/dev/null || true
	umount "$host/bpf" 2>/dev/null || true
}
trap finish EXIT
ip netns add "$ns"
ip netns add "$ns-peer"
ip -n "$ns" link add name veth1 type veth peer name veth0 netns "$ns-peer"
ip -n "$ns" addr add 10.202.0.2/24 dev veth1
ip -n "$ns-peer" addr add 10.202.0.1/24 dev veth0
ip -n "$ns" link set dev veth1 up
ip -n "$ns-peer" link set dev veth0 up
# Its own state root and bpffs, so the demo leaves the host as it was.
load() { target/release/bpfman-load --root "$host/root" --bpffs "$host/bpf" --policy "$keys/policy.toml" "$@"; }
load load image "oci:$out:v1" | tee "$host/loaded"
id=$(awk 'NR == 2 {print $1}' "$host/loaded")
load attach "$id" xdp --exclusive --iface veth1 --netns "$ns"
ip netns exec "$ns-peer" ping -q -c 5 -i 0.2 10.202.0.2
load get "$id"
stats=$(load get "$id" --output json | python3 -c 'import json,sys; print([m["pin"] for m in json.load(sys.stdin)["maps"] if m["name"] == "xdp_stats_map"][0])')
# Per-CPU {packets, bytes}: sum the packets over CPUs.
packets=$(bpftool -j map dump pinned "$stats" | python3 -c 'import json,sys; print(sum(int("".join(reversed([b[2:] for b in c["value"][:8]])), 16) for e in json.load(sys.stdin) for c in e["values"]))')
echo "xdp_stats counted $packets packets on veth1"
[ "$packets" -ge 5 ]
load unload "$id"
load list
