// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * bpfman-load's XDP dispatcher: ten slots prog0..prog9, each a global
 * function a user program replaces (BPF_PROG_TYPE_EXT). Slot i runs if
 * i < num_progs_enabled; the chain goes on past it only if bit `ret` of
 * chain_call_actions[i] is set (the program's proceed-on actions). The
 * configuration is read-only data set before load, so the verifier prunes
 * the slots that are not enabled.
 *
 * Each stub calls bpf_xdp_adjust_tail(ctx, 0), a no-op, so that the kernel
 * counts it as changing packet data: Linux 6.13 (and stable kernels that
 * took the change) lets an extension that changes packet data replace only
 * such a function. A stub never runs on traffic: a slot is enabled only
 * with its program attached over it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "dispatcher.h"

static volatile const struct dispatcher_config conf = {};

__attribute__((noinline)) int prog0(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog1(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog2(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog3(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog4(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog5(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog6(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog7(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog8(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

__attribute__((noinline)) int prog9(struct xdp_md *ctx)
{
	volatile int ret = XDP_STUB_RET;

	if (!ctx)
		return XDP_ABORTED;
	bpf_xdp_adjust_tail(ctx, 0);
	return ret;
}

/*
 * The proceed-on set of almost every slot: XDP_PASS, with bit 31 as every
 * slot has it.
 */
#define PROCEED_ON_PASS ((1U << XDP_PASS) | (1U << XDP_STUB_RET))

/*
 * Slot i: the chain stops at a slot not enabled, and after slot i unless
 * bit `ret` of its chain_call_actions is set (a verdict outside 0..31
 * stops it). The configuration is a frozen read-only map, so the verifier
 * knows every value read here: it follows one side of the test of a
 * slot's actions, and the kernel removes the side never taken, and the
 * slots past num_progs_enabled, before the JIT. Built for BPF ISA v3
 * (32-bit compares, no zero-extension), what runs for a slot that proceeds
 * on XDP_PASS is one compare, the call, one load and one compare of the
 * verdict; other proceed-on sets keep the bit test.
 */
#define SLOT(i)                                                            \
	do {                                                               \
		if (n <= (i))                                              \
			return XDP_PASS;                                   \
		ret = prog##i(ctx);                                        \
		if (conf.chain_call_actions[i] == PROCEED_ON_PASS) {       \
			if (ret != XDP_PASS && ret != XDP_STUB_RET)        \
				return ret;                                \
		} else if ((__u32)ret > 31 ||                              \
			   !((1U << ret) & conf.chain_call_actions[i])) {  \
			return ret;                                        \
		}                                                          \
	} while (0)

SEC("xdp")
int xdp_dispatcher(struct xdp_md *ctx)
{
	__u8 n = conf.num_progs_enabled;
	int ret;

	SLOT(0);
	SLOT(1);
	SLOT(2);
	SLOT(3);
	SLOT(4);
	SLOT(5);
	SLOT(6);
	SLOT(7);
	SLOT(8);
	SLOT(9);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
