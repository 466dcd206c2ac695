#!/usr/bin/env bash
# The main job, end to end, with no registry: build a multi-arch eBPF image
# from the committed objects into a local OCI layout, inspect it, and (if
# skopeo is installed) show that standard OCI tooling reads it.
#
#   scripts/demo.sh [OUTPUT_DIR]
#
# Signing and loading join this script as their issues land (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d)/xdp-counter}
cargo build --quiet --release -p bpfman-image
bin=target/release/bpfman-image

echo "== build: one object per architecture -> OCI image index at $out"
ref=$("$bin" build \
	--object amd64=testdata/bpf/xdp_counter.bpfel.o \
	--object arm64=testdata/bpf/xdp_counter.bpfel.o \
	--object s390x=testdata/bpf/xdp_counter.bpfeb.o \
	--annotation org.opencontainers.image.title=xdp-counter \
	--output "oci:$out:v1")
echo "$ref"

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
