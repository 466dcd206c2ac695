#!/usr/bin/env bash
# Registry transfer benchmark: push then pull of the same image to the same
# local registry (Debian's docker-registry on 127.0.0.1), by bpfman-image and,
# in the same run, by `skopeo copy` doing the same two transfers. Each round
# uses a fresh repository, and both tools start it with empty blob-location
# caches (skopeo's blob-info cache, our blob-locations.json), so every push
# uploads every blob and every pull downloads it. Then each tool pushes the
# image to a second fresh repository with its cache as the first push left
# it, where both mount the blobs instead of uploading them. Prints the
# median of each and the ratio ours/skopeo.
#
#   benches/transfer.sh            # ROUNDS=7 by default
#   ROUNDS=15 benches/transfer.sh
#
# Needs: docker-registry, skopeo, llvm-objcopy-14 (for the large image),
# python3 (a free port). Release build of bpfman-image.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-7}

source benches/lib.sh
needs docker-registry skopeo llvm-objcopy-14 python3

cargo build --release --quiet -p bpfman-image
BIN=$PWD/target/release/bpfman-image

start_registry

# skopeo (as root) keeps its blob-info cache here; it is set aside for the
# run and put back on exit.
SKOPEO_CACHE=/var/lib/containers/cache/blob-info-cache-v1.boltdb
if [ -e "$SKOPEO_CACHE" ]; then
	mv "$SKOPEO_CACHE" "$work/skopeo-cache.saved"
	trap 'mv "$work/skopeo-cache.saved" "$SKOPEO_CACHE" 2>/dev/null || true; cleanup' EXIT
fi

# Two images: the multi-arch example (small, many requests) and a single
# object carrying 16 MiB of incompressible data (throughput, chunked upload).
"$BIN" build -q --output "oci:$work/small:v1" \
	--object amd64=testdata/bpf/xdp_counter.bpfel.o \
	--object s390x=testdata/bpf/xdp_counter.bpfeb.o >/dev/null
head -c $((16 << 20)) /dev/urandom >"$work/payload.bin"
llvm-objcopy-14 --add-section .bench_payload="$work/payload.bin" \
	--set-section-flags .bench_payload=readonly,data \
	testdata/bpf/xdp_counter.bpfel.o "$work/large.bpfel.o"
"$BIN" build -q --output "oci:$work/large:v1" --object "$work/large.bpfel.o" >/dev/null

printf '%-6s %-8s %10s %10s %10s %12s\n' image tool "push ms" "pull ms" "total ms" "2nd repo ms"
for img in small large; do
	size=$(du -sb "$work/$img/blobs" | cut -f1)
	: >"$work/ours" && : >"$work/skopeo"
	for i in $(seq "$ROUNDS"); do
		export XDG_CACHE_HOME=$work/cache-$img-$i
		a=$(now)
		"$BIN" push -q "oci:$work/$img:v1" "$REG/ours-$img-$i:v1" >/dev/null
		b=$(now)
		"$BIN" pull -q "$REG/ours-$img-$i:v1" --output "oci:$work/pulled-ours-$img-$i:v1" >/dev/null
		c=$(now)
		"$BIN" push -q "oci:$work/$img:v1" "$REG/ours-again-$img-$i:v1" >/dev/null
		d=$(now)
		echo "$((b - a)) $((c - b)) $((d - c))" >>"$work/ours"
		rm -f "$SKOPEO_CACHE"

		# skopeo really uploads here (its --debug log shows POST, PATCH,
		# PUT per blob): the source is a layout, so its blob-info cache has
		# no repository to mount from.
		a=$(now)
		skopeo copy -q --all --dest-tls-verify=false "oci:$work/$img:v1" "docker://$REG/skopeo-$img-$i:v1"
		b=$(now)
		skopeo copy -q --all --src-tls-verify=false "docker://$REG/skopeo-$img-$i:v1" "oci:$work/pulled-skopeo-$img-$i:v1"
		c=$(now)
		skopeo copy -q --all --dest-tls-verify=false "oci:$work/$img:v1" "docker://$REG/skopeo-again-$img-$i:v1"
		d=$(now)
		echo "$((b - a)) $((c - b)) $((d - c))" >>"$work/skopeo"
	done
	for tool in ours skopeo; do
		push=$(cut -d' ' -f1 "$work/$tool" | median)
		pull=$(cut -d' ' -f2 "$work/$tool" | median)
		again=$(cut -d' ' -f3 "$work/$tool" | median)
		eval "${tool}_push=$push ${tool}_pull=$pull ${tool}_again=$again"
		printf '%-6s %-8s %10s %10s %10s %12s\n' "$img" "$tool" "$(ms "$push")" "$(ms "$pull")" "$(ms $((push + pull)))" "$(ms "$again")"
	done
	awk -v op="$ours_push" -v sp="$skopeo_push" -v ol="$ours_pull" -v sl="$skopeo_pull" \
		-v oa="$ours_again" -v sa="$skopeo_again" -v n="$size" -v img="$img" 'BEGIN {
		printf "%-6s ratio    %10.2f %10.2f %10.2f %12.2f   (bpfman-image / skopeo; %d bytes of blobs, median of rounds)\n",
			img, op/sp, ol/sl, (op+ol)/(sp+sl), oa/sa, n }'
done
echo "rounds: $ROUNDS; registry: docker-registry $(docker-registry --version | awk '{print $NF}') on $REG; $(skopeo --version)"
