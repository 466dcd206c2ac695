#!/usr/bin/env bash
# Declared state: `bpfman-load apply` of 20 deployments on one host (a
# signed image from the local registry, each deployment on its own veth,
# XDP), cold (empty cache), warm with nothing changed, and with one
# deployment changed, beside the same done with the CLI one command at a
# time (`load image` + `attach` per deployment) in the same run. Then a
# simulated fleet (HOSTS network namespaces, each with its own root and
# bpffs) applying one file at once from a cold cache: the rollout time and
# the registry requests per host.
#
#   sudo benches/apply.sh           # ROUNDS=5, HOSTS=8 by default
#
# Needs root, docker-registry, iproute2, unshare, python3. Release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
HOSTS=${HOSTS:-8}
N=20

source benches/lib.sh
needs docker-registry ip unshare python3
[ "$(id -u)" -eq 0 ] || { echo "$0 needs root (it loads programs)" >&2; exit 1; }

cargo build --release --quiet -p bpfman-image -p bpfman-load
IMG=$PWD/target/release/bpfman-image
LOAD=$PWD/target/release/bpfman-load
OBJ=testdata/bpf/xdp_counter.bpfel.o

REG_ACCESS_LOG=1 start_registry

# One namespace with N veth pairs for the single host; HOSTS namespaces
# with one veth each for the fleet; bpffs mounts of our own.
NS=bpfman-apply-$$
ip netns add "$NS"
for i in $(seq "$N"); do
	ip -n "$NS" link add name "v$i" type veth peer name "p$i"
	ip -n "$NS" link set dev "v$i" up
	ip -n "$NS" link set dev "p$i" up
done
mkdir -p /run/bpfman-apply-bench
: >/run/bpfman-apply-bench/host
for h in $(seq "$HOSTS"); do
	ip netns add "$NS-h$h"
	ip -n "$NS-h$h" link add name veth1 type veth peer name veth0
	ip -n "$NS-h$h" link set dev veth1 up
done
mounts=()
bpffs() {
	mkdir -p "$1"
	mount -t bpf bpf "$1"
	mounts+=("$1")
}
teardown() {
	ip netns del "$NS" 2>/dev/null || true
	for h in $(seq "$HOSTS"); do ip netns del "$NS-h$h" 2>/dev/null || true; done
	for m in "${mounts[@]}"; do umount "$m" 2>/dev/null || true; done
	rm -rf /run/bpfman-apply-bench
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

# desired FILE VERDICT_OF_THE_FIRST: N deployments of the image.
desired() {
	: >"$1"
	for i in $(seq "$N"); do
		local verdict=02000000
		[ "$i" = 1 ] && verdict=$2
		cat >>"$1" <<TOML
[deployment.d$i]
image = "$IMAGE"
globals = { verdict = "$verdict" }
[[deployment.d$i.attach]]
hook = "xdp"
iface = "v$i"
netns = "$NS"
exclusive = true

TOML
	done
}
desired "$work/a.toml" 02000000
desired "$work/b.toml" 01000000

apply() { "$LOAD" --root "$1" --bpffs "$2" --policy "$work/policy.toml" apply -f "$3" >/dev/null; }
# by_hand ROOT BPF: what the file says, one command at a time.
by_hand() {
	local id
	for i in $(seq "$N"); do
		id=$("$LOAD" --root "$1" --bpffs "$2" --policy "$work/policy.toml" load image "$IMAGE" \
			--global verdict=02000000 2>/dev/null | awk 'NR == 2 {print $1}')
		"$LOAD" --root "$1" --bpffs "$2" attach "$id" xdp --exclusive --iface "v$i" --netns "$NS" >/dev/null 2>&1
	done
}
unload_all() {
	local ids
	ids=$("$LOAD" --root "$1" --bpffs "$2" list 2>/dev/null | awk 'NR > 1 {print $1}')
	[ -z "$ids" ] || "$LOAD" --root "$1" --bpffs "$2" unload $ids >/dev/null
}

: >"$work/cold" && : >"$work/warm" && : >"$work/change" && : >"$work/hand"
for r in $(seq "$ROUNDS"); do
	bpf=$work/bpf-$r
	bpffs "$bpf"
	a=$(now)
	apply "$work/apply-$r" "$bpf" "$work/a.toml"
	b=$(now)
	apply "$work/apply-$r" "$bpf" "$work/a.toml"
	c=$(now)
	apply "$work/apply-$r" "$bpf" "$work/b.toml"
	d=$(now)
	unload_all "$work/apply-$r" "$bpf"
	e=$(now)
	by_hand "$work/hand-$r" "$bpf"
	f=$(now)
	unload_all "$work/hand-$r" "$bpf"
	echo $((b - a)) >>"$work/cold"
	echo $((c - b)) >>"$work/warm"
	echo $((d - c)) >>"$work/change"
	echo $((f - e)) >>"$work/hand"
done
hand=$(median <"$work/hand")
ratio() { awk -v a="$1" -v b="$hand" 'BEGIN {printf "%.2f", a/b}'; }
printf '%-58s %10s\n' "$N deployments (signed image, XDP on $N veths)" "median ms"
printf '%-58s %10s\n' "CLI, one command at a time, cold (baseline)" "$(ms "$hand")"
for k in cold warm change; do
	v=$(median <"$work/$k")
	case $k in
	cold) what="apply, cold cache" ;;
	warm) what="apply again, nothing changed" ;;
	change) what="apply, one deployment changed (replaced in place)" ;;
	esac
	printf '%-58s %10s  (%sx baseline)\n' "$what" "$(ms "$v")" "$(ratio "$v")"
done

# The fleet: HOSTS hosts apply one file at once, cold.
cat >"$work/fleet.toml" <<TOML
[deployment.counter]
image = "$IMAGE"
[[deployment.counter.attach]]
hook = "xdp"
iface = "veth1"
netns = "/run/bpfman-apply-bench/host"
exclusive = true
TOML
for h in $(seq "$HOSTS"); do bpffs "$work/fleet-bpf-$h"; done
before=$(requests)
a=$(now)
pids=()
for h in $(seq "$HOSTS"); do
	unshare --mount --propagation private sh -c \
		'mount --bind "/run/netns/$1" /run/bpfman-apply-bench/host && shift && exec "$@"' \
		sh "$NS-h$h" "$LOAD" --root "$work/fleet-root-$h" --bpffs "$work/fleet-bpf-$h" \
		--policy "$work/policy.toml" apply -f "$work/fleet.toml" >/dev/null &
	pids+=($!)
done
# Not a bare `wait`: the registry runs in the background too.
for p in "${pids[@]}"; do wait "$p"; done
b=$(now)
after=$(requests)
printf '%-58s %10s\n' "fleet of $HOSTS hosts, cold rollout at once" "$(ms $((b - a)))"
printf '%-58s %10s\n' "registry requests per host" "$(awk -v n=$((after - before)) -v h="$HOSTS" 'BEGIN {printf "%.1f", n/h}')"
one=$(requests 'GET /v2/.*/blobs/')
printf '%-58s %10s\n' "blob downloads in all (this bench, both parts)" "$one"
echo "rounds: $ROUNDS; object: xdp_counter, signed image; registry: docker-registry on $REG; kernel $(uname -r)"
