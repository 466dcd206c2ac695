#!/usr/bin/env bash
# Load-to-attached benchmark: the time from `bpfman-load load image` to an
# XDP program attached on a veth in a network namespace, with a warm cache
# (`--pull-policy never`: re-hash, re-verify the signature, load, pin,
# record, then `attach`; as two commands, and as one `load image ...
# attach xdp ...`, exclusive and into the interface's chain, where a lone
# program runs without a dispatcher) and with a cold cache from the local
# registry (pull and verify first), beside the same object loaded and
# attached with `bpftool prog load` + `ip link set ... xdp pinned` in the
# same run.
#
#   sudo benches/load_attach.sh           # ROUNDS=7 by default
#
# Needs root, docker-registry, bpftool, iproute2, python3. Release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}

source benches/lib.sh
needs docker-registry bpftool ip python3
[ "$(id -u)" -eq 0 ] || { echo "$0 needs root (it loads programs)" >&2; exit 1; }

cargo build --release --quiet -p bpfman-image -p bpfman-load
IMG=$PWD/target/release/bpfman-image
LOAD=$PWD/target/release/bpfman-load
OBJ=testdata/bpf/xdp_counter.bpfel.o

start_registry

# A namespace with a veth to attach to, and a bpffs of our own.
NS=bpfman-bench-$$
ip netns add "$NS"
ip -n "$NS" link add name veth1 type veth peer name veth0
ip -n "$NS" link set dev veth1 up
ip -n "$NS" link set dev veth0 up
mkdir "$work/bpf"
mount -t bpf bpf "$work/bpf"
teardown() {
	ip netns del "$NS" 2>/dev/null || true
	umount "$work/bpf" 2>/dev/null || true
	cleanup
}
trap teardown EXIT

export COSIGN_PASSWORD=bench
"$IMG" keygen --output-key-prefix "$work/k" 2>/dev/null
cat >"$work/policy.toml" <<POLICY
[default]
rule = "require-signature"
keys = ["k.pub"]
POLICY
IMAGE=$REG/bench/xdp:v1
"$IMG" build -q --push "$IMAGE" --sign-key "$work/k.key" --object "amd64=$OBJ" >/dev/null

# load_attach ROOT [PULL-POLICY]: prints the program id after attaching.
load_attach() {
	local id
	id=$("$LOAD" --root "$1" --bpffs "$work/bpf" --policy "$work/policy.toml" \
		load image "$IMAGE" --pull-policy "$2" 2>/dev/null | awk 'NR == 2 {print $1}')
	"$LOAD" --root "$1" --bpffs "$work/bpf" attach "$id" xdp --exclusive --iface veth1 --netns "$NS" >/dev/null 2>&1
	echo "$id"
}
# load_and_attach ROOT [ATTACH-FLAG...]: the same in one process; prints
# the program id. Without --exclusive, the program joins the interface's
# chain, where a lone program runs without a dispatcher.
load_and_attach() {
	local root=$1
	shift
	"$LOAD" --root "$root" --bpffs "$work/bpf" --policy "$work/policy.toml" \
		load image "$IMAGE" --pull-policy never \
		attach xdp "$@" --iface veth1 --netns "$NS" 2>/dev/null | awk 'NR == 2 {print $1}'
}
unload() { "$LOAD" --root "$1" --bpffs "$work/bpf" unload "$2" >/dev/null 2>&1; }

warm_root=$work/warm-root
"$LOAD" --root "$warm_root" --policy "$work/policy.toml" pull "$IMAGE" >/dev/null 2>&1

: >"$work/cold" && : >"$work/warm" && : >"$work/one" && : >"$work/chain" && : >"$work/direct"
for i in $(seq "$ROUNDS"); do
	a=$(now)
	id=$(load_attach "$warm_root" never)
	b=$(now)
	unload "$warm_root" "$id"
	g=$(now)
	id=$(load_and_attach "$warm_root" --exclusive)
	h=$(now)
	[ -n "$id" ] || { echo "load image ... attach failed" >&2; exit 1; }
	unload "$warm_root" "$id"
	j=$(now)
	id=$(load_and_attach "$warm_root")
	k=$(now)
	[ -n "$id" ] || { echo "load image ... attach (chain) failed" >&2; exit 1; }
	unload "$warm_root" "$id"
	c=$(now)
	id=$(load_attach "$work/cold-$i" if-not-present)
	d=$(now)
	unload "$work/cold-$i" "$id"
	e=$(now)
	bpftool prog load "$OBJ" "$work/bpf/direct" type xdp
	ip -n "$NS" link set dev veth1 xdp pinned "$work/bpf/direct"
	f=$(now)
	ip -n "$NS" link set dev veth1 xdp off
	rm "$work/bpf/direct"
	echo $((b - a)) >>"$work/warm"
	echo $((h - g)) >>"$work/one"
	echo $((k - j)) >>"$work/chain"
	echo $((d - c)) >>"$work/cold"
	echo $((f - e)) >>"$work/direct"
done
warm=$(median <"$work/warm")
one=$(median <"$work/one")
chain=$(median <"$work/chain")
cold=$(median <"$work/cold")
direct=$(median <"$work/direct")
ratio() { awk -v a="$1" -v b="$direct" 'BEGIN {printf "%.2f", a/b}'; }
printf '%-52s %10s\n' "load + attach XDP on a veth" "median ms"
printf '%-52s %10s\n' "bpftool prog load + ip link set xdp (baseline)" "$(ms "$direct")"
printf '%-52s %10s  (%sx baseline)\n' "bpfman-load load image + attach, warm cache" "$(ms "$warm")" "$(ratio "$warm")"
printf '%-52s %10s  (%sx baseline)\n' "bpfman-load load image ... attach, warm, one process" "$(ms "$one")" "$(ratio "$one")"
printf '%-52s %10s  (%sx baseline)\n' "  the same into the XDP chain (alone: no dispatcher)" "$(ms "$chain")" "$(ratio "$chain")"
printf '%-52s %10s  (%sx baseline)\n' "bpfman-load load image + attach, cold (registry)" "$(ms "$cold")" "$(ratio "$cold")"
echo "rounds: $ROUNDS; object: xdp_counter, signed image; registry: docker-registry on $REG; $(bpftool --version | head -1); kernel $(uname -r)"
