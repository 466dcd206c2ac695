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

source benches/lib.sh
needs docker-registry skopeo python3

cargo build --release --quiet -p bpfman-image -p bpfman-load
IMG=$PWD/target/release/bpfman-image
LOAD=$PWD/target/release/bpfman-load

start_registry

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
