// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * bpfman-load's TC dispatcher: the XDP dispatcher's protocol with TC
 * return codes. TC_ACT_UNSPEC is -1, so a return value `ret` maps to bit
 * `ret + 1` of chain_call_actions[i]. When every enabled slot proceeds, it
 * returns TC_ACT_UNSPEC: under tcx that is TCX_NEXT, so other tcx programs
 * on the hook still run.
 *
 * Each stub calls bpf_skb_pull_data(skb, 0) so that the kernel counts it as
 * changing packet data, as the XDP dispatcher's stubs do (see there): a
 * program that changes packet data may then replace it on Linux 6.13+.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include "dispatcher.h"

static volatile const struct dispatcher_config conf = {};

__attribute__((noinline)) int prog0(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog1(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog2(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog3(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog4(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog5(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog6(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog7(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog8(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

__attribute__((noinline)) int prog9(struct __sk_buff *skb)
{
	volatile int ret = TC_STUB_RET;

	if (!skb)
		return TC_ACT_SHOT;
	bpf_skb_pull_data(skb, 0);
	return ret;
}

SEC("classifier")
int tc_dispatcher(struct __sk_buff *skb)
{
	int ret;

	if (conf.num_progs_enabled < 1)
		goto out;
	ret = prog0(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[0]))
		return ret;
	if (conf.num_progs_enabled < 2)
		goto out;
	ret = prog1(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[1]))
		return ret;
	if (conf.num_progs_enabled < 3)
		goto out;
	ret = prog2(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[2]))
		return ret;
	if (conf.num_progs_enabled < 4)
		goto out;
	ret = prog3(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[3]))
		return ret;
	if (conf.num_progs_enabled < 5)
		goto out;
	ret = prog4(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[4]))
		return ret;
	if (conf.num_progs_enabled < 6)
		goto out;
	ret = prog5(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[5]))
		return ret;
	if (conf.num_progs_enabled < 7)
		goto out;
	ret = prog6(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[6]))
		return ret;
	if (conf.num_progs_enabled < 8)
		goto out;
	ret = prog7(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[7]))
		return ret;
	if (conf.num_progs_enabled < 9)
		goto out;
	ret = prog8(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[8]))
		return ret;
	if (conf.num_progs_enabled < 10)
		goto out;
	ret = prog9(skb);
	if (!((1U << (ret + 1)) & conf.chain_call_actions[9]))
		return ret;
out:
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
