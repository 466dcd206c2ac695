#!/usr/bin/env bash
# Prepares the VM test tier's kernels: the two kernel lines Debian 12
# ships, unpacked into target/vm/<line>/: vmlinuz, the modules the tests
# insmod (veth, sch_ingress, cls_bpf), decompressed, and the package name.
#
#   6.12  linux-image-6.12.*+deb12-cloud-amd64-unsigned: tcx, kprobes,
#         fentry, freplace, no lockdown
#   6.1   linux-image-6.1.0-*-cloud-amd64-unsigned: Debian 12's own
#         kernel; no tcx (TC goes through clsact), the rest as 6.12
#
# Idempotent; .ci/run calls it.
#
#   tests/vm/prepare.sh                 # both lines, newest of each
#   tests/vm/prepare.sh 6.1             # one line
#   VM_KERNEL_6_12=6.12.113+deb12 tests/vm/prepare.sh 6.12   # a given version
set -euo pipefail
cd "$(dirname "$0")/../.."
lines=("$@")
((${#lines[@]})) || lines=(6.12 6.1)

for tool in qemu-system-x86_64 busybox cpio xz; do
	command -v "$tool" >/dev/null || { echo "$0: needs $tool (apt-get install qemu-system-x86 busybox-static cpio xz-utils)" >&2; exit 1; }
done

pattern() {
	case "$1" in
	6.12) echo '^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
	6.1) echo '^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
	*) echo "$0: unknown kernel line '$1' (6.12 or 6.1)" >&2; exit 1 ;;
	esac
}

newest() {
	apt-cache search --names-only "$(pattern "$1")" | awk '{print $1}' | sort -V | tail -n1
}

prepare() {
	local line=$1 out=target/vm/$1 pkg pinned
	if [ -s "$out/vmlinuz" ] && [ -s "$out/modules/veth.ko" ]; then
		echo "VM kernel $line ready: $(cat "$out/version")"
		return
	fi
	pinned=VM_KERNEL_${line//./_}
	if [ -n "${!pinned:-}" ]; then
		pkg=linux-image-${!pinned}-cloud-amd64-unsigned
	else
		pkg=$(newest "$line")
		# A fresh machine may have no package lists yet.
		if [ -z "$pkg" ] && [ "$(id -u)" -eq 0 ]; then
			apt-get update -qq
			pkg=$(newest "$line")
		fi
	fi
	[ -n "$pkg" ] || { echo "$0: no $line cloud kernel package in apt (apt-get update?)" >&2; exit 1; }
	local tmp
	tmp=$(mktemp -d)
	(cd "$tmp" && apt-get download "$pkg" 2>/dev/null)
	dpkg-deb -x "$tmp"/*.deb "$tmp/x"
	rm -rf "$out" && mkdir -p "$out/modules"
	cp "$tmp"/x/boot/vmlinuz-* "$out/vmlinuz"
	for m in drivers/net/veth net/sched/sch_ingress net/sched/cls_bpf; do
		local ko dst
		ko=$(ls "$tmp"/x/lib/modules/*/kernel/$m.ko* | head -n1)
		dst=$out/modules/$(basename "$m").ko
		case "$ko" in
		*.xz) xz -dc "$ko" >"$dst" ;;
		*) cp "$ko" "$dst" ;;
		esac
	done
	echo "$pkg" >"$out/version"
	rm -rf "$tmp"
	echo "VM kernel $line ready: $pkg"
}

for line in "${lines[@]}"; do
	prepare "$line"
done
