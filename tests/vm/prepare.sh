#!/usr/bin/env bash
# Prepares the VM test tier's kernel: Debian 12's 6.12 cloud kernel (a real
# kernel without lockdown, with kprobes, fentry and freplace), unpacked into
# target/vm/: vmlinuz, and the modules the tests insmod (veth, sch_ingress,
# cls_bpf) decompressed. Idempotent; .ci/run calls it.
#
#   tests/vm/prepare.sh            # newest 6.12 cloud kernel apt knows
#   VM_KERNEL=6.12.113+deb12 tests/vm/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/vm
if [ -s "$out/vmlinuz" ] && [ -s "$out/modules/veth.ko" ]; then
	echo "VM kernel ready: $(cat "$out/version")"
	exit 0
fi
for tool in qemu-system-x86_64 busybox cpio xz; do
	command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install qemu-system-x86 busybox-static cpio xz-utils)" >&2; exit 1; }
done
if [ -n "${VM_KERNEL:-}" ]; then
	pkg=linux-image-${VM_KERNEL}-cloud-amd64-unsigned
else
	find_pkg() {
		apt-cache search --names-only '^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' |
			awk '{print $1}' | sort -V | tail -n1
	}
	pkg=$(find_pkg)
	# A fresh machine may have no package lists yet.
	if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
		apt-get update -qq
		pkg=$(find_pkg)
	fi
fi
[ -n "$pkg" ] || { echo "$0: no linux-image-6.12 cloud package in apt (apt-get update?)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download "$pkg" 2>/dev/null)
dpkg-deb -x "$tmp"/*.deb "$tmp/x"
rm -rf "$out" && mkdir -p "$out/modules"
cp "$tmp"/x/boot/vmlinuz-* "$out/vmlinuz"
for m in drivers/net/veth net/sched/sch_ingress net/sched/cls_bpf; do
	xz -dc "$tmp"/x/lib/modules/*/kernel/$m.ko.xz >"$out/modules/$(basename "$m").ko"
done
echo "$pkg" >"$out/version"
echo "VM kernel ready: $pkg"
