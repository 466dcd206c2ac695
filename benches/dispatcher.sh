#!/usr/bin/env bash
# Dispatcher benchmark, in the VM tier (the host kernel refuses freplace):
# per-packet cost by BPF_PROG_TEST_RUN (bpftool prog run ... repeat) of
# xdp_pass alone, through our XDP dispatcher with 1, 5 and 10 programs, and
# through libxdp's dispatcher (xdp-loader) with the same programs, all in
# one VM run; and the time to add the 10th program. Timings under TCG are
# emulated: read the ratios.
#
#   sudo benches/dispatcher.sh
#
# Needs root, qemu-system-x86, busybox-static, cpio, bpftool, xdp-tools
# (for the libxdp rows), and tests/vm/prepare.sh's 6.12 kernel.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/vm/prepare.sh 6.12 >/dev/null
BPFMAN_VM_FILTER=vmbench_ cargo test --quiet -p bpfman-tests --test integration \
	vm::guest_tests_pass_on_linux_6_12 -- --exact --nocapture 2>&1 | sed -n 's/^BENCH //p'
