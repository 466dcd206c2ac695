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
# counts pings; then unloads it and shows nothing is left. Last, the fleet
# view: two simulated hosts (each a network namespace with its own state
# root and bpffs) apply one desired-state file from the signed layout, each
# counts its own pings, a second image version rolls out, and `status`
# shows both hosts converged on the new digest.
set -euo pipefail
cd "$(dirname "$0")/.."

# Everything the demo needs, checked before anything is built: as root on
# Debian or Ubuntu what is missing is installed (as .ci/run does; set
# BPFMAN_DEMO_NO_INSTALL=1 to only check), otherwise the packages to
# install are named and the demo stops.
preflight() {
	local needs=(cargo:cargo gcc:gcc)
	if [ "$(id -u)" -eq 0 ]; then
		needs+=(ip:iproute2 ping:iputils-ping bpftool:bpftool python3:python3 mount:mount unshare:util-linux)
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
	for h in a b; do
		ip netns del "$ns-$h" 2>/dev/null || true
		ip netns del "$ns-$h-peer" 2>/dev/null || true
		umount "$host/$h/bpf" 2>/dev/null || true
	done
	rm -rf "/run/bpfman-demo-$$"
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

echo
echo "== the fleet view: two hosts converge to one desired-state file"
# Each simulated host: a network namespace with a veth (its "eth0"), its
# own state root and bpffs; bpfman-load runs in a mount namespace where
# /run/bpfman-demo-PID/host is that host's network namespace, so one file
# means "my veth1" on each.
"$bin" tag "oci:$out:v1" stable >/dev/null
view=/run/bpfman-demo-$$
mkdir -p "$view" && : >"$view/host"
net=3
for h in a b; do
	ip netns add "$ns-$h"
	ip netns add "$ns-$h-peer"
	ip -n "$ns-$h" link add name veth1 type veth peer name veth0 netns "$ns-$h-peer"
	ip -n "$ns-$h" addr add "10.202.$net.2/24" dev veth1
	ip -n "$ns-$h-peer" addr add "10.202.$net.1/24" dev veth0
	ip -n "$ns-$h" link set dev veth1 up
	ip -n "$ns-$h-peer" link set dev veth0 up
	mkdir -p "$host/$h/bpf"
	mount -t bpf bpf "$host/$h/bpf"
	net=$((net + 1))
done
cat >"$host/fleet.toml" <<TOML
# Every host runs the signed counter from the layout, following its tag.
[deployment.xdp-counter]
image = "oci:$out:stable"
pull-policy = "always"

[[deployment.xdp-counter.attach]]
hook = "xdp"
iface = "veth1"
netns = "$view/host"
exclusive = true
TOML
cat "$host/fleet.toml"
# on HOST ARGS...: bpfman-load as that host.
on() {
	local h=$1
	shift
	unshare --mount --propagation private sh -c 'mount --bind "/run/netns/$1" "$2" && shift 2 && exec "$@"' \
		sh "$ns-$h" "$view/host" target/release/bpfman-load --root "$host/$h/root" --bpffs "$host/$h/bpf" \
		--policy "$keys/policy.toml" "$@"
}
for h in a b; do
	echo "-- host $h: apply"
	on "$h" apply -f "$host/fleet.toml"
done
net=3
for h in a b; do
	ip netns exec "$ns-$h-peer" ping -q -c 3 -i 0.2 "10.202.$net.2" >/dev/null
	stats=$(on "$h" list --output json | python3 -c 'import json,sys; print([m["pin"] for m in json.load(sys.stdin)[0]["maps"] if m["name"] == "xdp_stats_map"][0])')
	packets=$(bpftool -j map dump pinned "$stats" | python3 -c 'import json,sys; print(sum(int("".join(reversed([b[2:] for b in c["value"][:8]])), 16) for e in json.load(sys.stdin) for c in e["values"]))')
	echo "host $h counted $packets packets on its own veth1"
	[ "$packets" -ge 3 ]
	net=$((net + 1))
done

echo
echo "== a second version rolls out: rebuilt, signed, tagged stable; both hosts apply"
"$bin" build --quiet \
	--object amd64=testdata/bpf/xdp_counter.bpfel.o \
	--object arm64=testdata/bpf/xdp_counter.bpfel.o \
	--object s390x=testdata/bpf/xdp_counter.bpfeb.o \
	--annotation org.opencontainers.image.title=xdp-counter \
	--annotation org.opencontainers.image.version=2 \
	--output "oci:$out:stable" --force --sign-key "$keys/cosign.key" | tee "$keys/v2"
v2=$(head -n1 "$keys/v2")
for h in a b; do
	on "$h" apply -f "$host/fleet.toml"
done
for h in a b; do
	echo "-- host $h: status"
	on "$h" status -f "$host/fleet.toml"
	on "$h" list --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["source"]["image"])' | grep -qx "${v2##*@}"
done
echo "both hosts converged on ${v2##*@}"
