// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* tcx programs (kernel >= 6.6), one per direction. */
#include "common.h"

COUNTER_MAP(tcx_ingress_map);
COUNTER_MAP(tcx_egress_map);

SEC("tcx/ingress")
int tcx_ingress(struct __sk_buff *skb)
{
	bump(&tcx_ingress_map);
	return TC_ACT_OK;
}

SEC("tcx/egress")
int tcx_egress(struct __sk_buff *skb)
{
	bump(&tcx_egress_map);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
