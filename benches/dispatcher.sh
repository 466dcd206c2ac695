#!/usr/bin/env bash
# Dispatcher benchmark, in the VM tier (the host kernel refuses freplace).
# Per-packet cost by BPF_PROG_TEST_RUN (bpftool prog run ... repeat) of what
# is on each hook: xdp_pass alone; our chains of 1, 2, 5 and 10 programs
# (one alone, then a dispatcher); libxdp's (xdp-loader) with the same
# object; and the time to add the 2nd, 5th and 10th program, ours and
# xdp-loader's. Every chain exists at once on its own veth, the rows are
# interleaved round by round, each figure is a median with its spread, and
# each chain is checked to hold the programs its row names (our list,
# xdp-loader status). Timings under TCG are emulated: read the ratios.
#
#   sudo benches/dispatcher.sh
#   sudo BENCH_ROUNDS=9 BENCH_ADD_ROUNDS=5 BENCH_REPEAT=200000 benches/dispatcher.sh
#
# Needs root, qemu-system-x86, busybox-static, cpio, bpftool, xdp-tools,
# and tests/vm/prepare.sh's 6.12 kernel. Builds the tests in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/vm/prepare.sh 6.12 >/dev/null
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# A release build: the guest runs our binary under TCG, where an
# unoptimised one is an order of magnitude slower than xdp-loader's C.
BPFMAN_VM_FILTER=vmbench_ cargo test --release --quiet -p bpfman-tests --test integration \
	vm::guest_tests_pass_on_linux_6_12 -- --exact --nocapture >"$log" 2>&1 || status=$?
sed -n 's/^BENCH //p' "$log"
if [ "$status" -ne 0 ]; then
	echo "the benchmark failed; its VM console:" >&2
	grep -v '^BENCH ' "$log" | tail -n 60 >&2
	exit "$status"
fi
