// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* A TC program written the modern libbpf way: SEC("tc"). */
#include "common.h"

COUNTER_MAP(tc_count_map);

SEC("tc")
int tc_count(struct __sk_buff *skb)
{
	bump(&tc_count_map);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
