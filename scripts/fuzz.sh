#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (libFuzzer through cargo-fuzz) for a
# bounded time and prints the executions of each. A crash fails the run and
# leaves its input under fuzz/artifacts/<target>/; turn it into a
# regression test before fixing it.
#
#   scripts/fuzz.sh [SECONDS]        # per target; default 30
#   FUZZ_SANITIZER=address scripts/fuzz.sh 300
#
# cargo-fuzz needs nightly flags; the one stable toolchain here accepts
# them with RUSTC_BOOTSTRAP=1. The sanitizer defaults to none (the code is
# safe Rust, and a panic is what is hunted; `address` works too, slower to
# build). Seeds: fuzz/seeds/<target>/ (committed), plus the committed test
# objects for the ELF targets.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-30}
SANITIZER=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
	echo "== installing cargo-fuzz"
	cargo install --locked --quiet cargo-fuzz
fi

cd fuzz
targets=$(cargo fuzz list)
echo "== building the fuzz targets (sanitizer: $SANITIZER)"
cargo fuzz build -O --sanitizer "$SANITIZER"

status=0
printf '%-14s %12s %10s  %s\n' TARGET EXECUTIONS SECONDS RESULT
for t in $targets; do
	corpus=corpus/$t
	mkdir -p "$corpus" "artifacts/$t"
	[ -d "seeds/$t" ] && cp -n seeds/"$t"/* "$corpus"/ 2>/dev/null || true
	case $t in
	elf | sections) cp -n ../testdata/bpf/*.o ../testdata/bad/* "$corpus"/ 2>/dev/null || true ;;
	esac
	log=$(mktemp)
	if cargo fuzz run -O --sanitizer "$SANITIZER" "$t" "$corpus" -- \
		-max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
		-artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
		result=ok
	else
		result="CRASH (input in fuzz/artifacts/$t/)"
		status=1
		tail -40 "$log"
	fi
	runs=$(grep -o 'Done [0-9]* runs' "$log" | awk '{print $2}' | tail -1)
	printf '%-14s %12s %10s  %s\n' "$t" "${runs:-?}" "$SECONDS_PER_TARGET" "$result"
	rm -f "$log"
done
exit $status
