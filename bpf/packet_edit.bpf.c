// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Programs that change packet data, for the dispatchers: since Linux 6.13
 * (and its stable backports) an extension may replace a function only if
 * both change packet data or neither does. xdp_edit moves the packet's
 * start out and back (bpf_xdp_adjust_head); tc_edit makes the skb's head
 * writable (bpf_skb_pull_data). Both count what they see and let it pass.
 */
#include "common.h"

COUNTER_MAP(xdp_edit_map);
COUNTER_MAP(tc_edit_map);

SEC("xdp")
int xdp_edit(struct xdp_md *ctx)
{
	if (bpf_xdp_adjust_head(ctx, -4))
		return XDP_ABORTED;
	if (bpf_xdp_adjust_head(ctx, 4))
		return XDP_ABORTED;
	bump(&xdp_edit_map);
	return XDP_PASS;
}

SEC("tc")
int tc_edit(struct __sk_buff *skb)
{
	if (bpf_skb_pull_data(skb, 0))
		return TC_ACT_SHOT;
	bump(&tc_edit_map);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
