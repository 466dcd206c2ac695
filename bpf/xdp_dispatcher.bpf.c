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

SEC("xdp")
int xdp_dispatcher(struct xdp_md *ctx)
{
	int ret;

	if (conf.num_progs_enabled < 1)
		goto out;
	ret = prog0(ctx);
	if (!((1U << ret) & conf.chain_call_actions[0]))
		return ret;
	if (conf.num_progs_enabled < 2)
		goto out;
	ret = prog1(ctx);
	if (!((1U << ret) & conf.chain_call_actions[1]))
		return ret;
	if (conf.num_progs_enabled < 3)
		goto out;
	ret = prog2(ctx);
	if (!((1U << ret) & conf.chain_call_actions[2]))
		return ret;
	if (conf.num_progs_enabled < 4)
		goto out;
	ret = prog3(ctx);
	if (!((1U << ret) & conf.chain_call_actions[3]))
		return ret;
	if (conf.num_progs_enabled < 5)
		goto out;
	ret = prog4(ctx);
	if (!((1U << ret) & conf.chain_call_actions[4]))
		return ret;
	if (conf.num_progs_enabled < 6)
		goto out;
	ret = prog5(ctx);
	if (!((1U << ret) & conf.chain_call_actions[5]))
		return ret;
	if (conf.num_progs_enabled < 7)
		goto out;
	ret = prog6(ctx);
	if (!((1U << ret) & conf.chain_call_actions[6]))
		return ret;
	if (conf.num_progs_enabled < 8)
		goto out;
	ret = prog7(ctx);
	if (!((1U << ret) & conf.chain_call_actions[7]))
		return ret;
	if (conf.num_progs_enabled < 9)
		goto out;
	ret = prog8(ctx);
	if (!((1U << ret) & conf.chain_call_actions[8]))
		return ret;
	if (conf.num_progs_enabled < 10)
		goto out;
	ret = prog9(ctx);
	if (!((1U << ret) & conf.chain_call_actions[9]))
		return ret;
out:
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
