#!/usr/bin/env bash
# Makes the build context of the Containerfile beside it: OUT/rootfs with
# the bpfman-load binary BIN at /bpfman-load, every shared library ldd says
# it needs (at the same paths), the dynamic loader, and the system's CA
# bundle (registries over TLS).
#
#   deploy/container/rootfs.sh target/release/bpfman-load /tmp/ctx
#   podman build -t bpfman-load -f deploy/container/Containerfile /tmp/ctx
set -euo pipefail
bin=${1:?usage: rootfs.sh BIN OUT}
out=${2:?usage: rootfs.sh BIN OUT}
root="$out/rootfs"
rm -rf "$root"
mkdir -p "$root"
install -m 0755 "$bin" "$root/bpfman-load"
# "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" and the loader's
# "/lib64/ld-linux-x86-64.so.2 (0x...)".
ldd "$bin" | awk '/=> \//{print $3} /^[ \t]*\//{print $1}' | while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
	mkdir -p "$root/etc/ssl/certs"
	cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
# Where the host's directories are mounted; /tmp for temporary files.
mkdir -p "$root/tmp" "$root/var/lib/bpfman-load" "$root/etc/bpfman-load" "$root/sys/fs/bpf" "$root/run/netns"
chmod 1777 "$root/tmp"
chmod 0700 "$root/var/lib/bpfman-load"
cp "$(dirname "$0")/Containerfile" "$out/Containerfile"
echo "$out"
