#!/usr/bin/env bash
# Loader cache benchmark: `bpfman-load pull` of a signed image into a cold
# cache (resolve, fetch every blob, fetch both signature formats, store,
# verify against a policy), and a warm `--pull-policy never` use (no
# network: re-hash every cached blob and re-verify the signature), beside
# `skopeo copy` of the same image from the same local registry into an OCI
# layout in the same run (fetch and store, no verification).
#
#   benches/load_cache.sh           # ROUNDS=7 by default
#
# Needs: docker-registry, skopeo, python3 (a free port). Release builds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}

for tool in docker-registry skopeo python3; do
	command -v "$tool" >/dev/null || { echo "benches/load_cache.sh needs $tool" >&2; exit 1; }
done

cargo build --release --quiet -p bpfman-image -p bpfman-load
IMG=$PWD/target/release/bpfman-image
LOAD=$PWD/target/release/bpfman-load

work=$(mktemp -d)
reg_pid=
cleanup() {
	[ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null && wait "$reg_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
REG=127.0.0.1:$port
cat >"$work/config.yml" <<CONF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/data
http:
  addr: $REG
CONF
docker-registry serve "$work/config.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.1
done

export COSIGN_PASSWORD=bench
"$IMG" keygen --output-key-prefix "$work/k" 2>/dev/null
cat >"$work/policy.toml" <<POLICY
[default]
rule = "require-signature"
keys = ["k.pub"]
POLICY
IMAGE=$REG/bench/xdp:v1
"$IMG" build -q --push "$IMAGE" --sign-key "$work/k.key" \
	--object amd64=testdata/bpf/xdp_counter.bpfel.o \
	--object s390x=testdata/bpf/xdp_counter.bpfeb.o >/dev/null

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v n="$1" 'BEGIN {printf "%.1f", n/1e6}'; }

: >"$work/cold" && : >"$work/warm" && : >"$work/skopeo"
for i in $(seq "$ROUNDS"); do
	root=$work/root-$i
	a=$(now)
	"$LOAD" --root "$root" --policy "$work/policy.toml" pull "$IMAGE" >/dev/null 2>&1
	b=$(now)
	"$LOAD" --root "$root" --policy "$work/policy.toml" pull --pull-policy never "$IMAGE" >/dev/null 2>&1
	c=$(now)
	skopeo copy -q --all --src-tls-verify=false "docker://$IMAGE" "oci:$work/skopeo-$i:v1"
	d=$(now)
	echo $((b - a)) >>"$work/cold"
	echo $((c - b)) >>"$work/warm"
	echo $((d - c)) >>"$work/skopeo"
done
cold=$(median <"$work/cold")
warm=$(median <"$work/warm")
sk=$(median <"$work/skopeo")
printf '%-44s %10s\n' "operation" "median ms"
printf '%-44s %10s\n' "skopeo copy registry -> layout (baseline)" "$(ms "$sk")"
printf '%-44s %10s  (%.2fx baseline)\n' "bpfman-load pull, cold cache, verified" "$(ms "$cold")" "$(awk -v a="$cold" -v b="$sk" 'BEGIN {print a/b}')"
printf '%-44s %10s  (%.2fx baseline)\n' "bpfman-load pull --pull-policy never, warm" "$(ms "$warm")" "$(awk -v a="$warm" -v b="$sk" 'BEGIN {print a/b}')"
echo "rounds: $ROUNDS; image: two-arch xdp_counter, signed; registry: docker-registry on $REG; $(skopeo --version)"
