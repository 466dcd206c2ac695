// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* A TC program with the older section name SEC("classifier"). */
#include "common.h"

COUNTER_MAP(classifier_count_map);

SEC("classifier")
int tc_classify(struct __sk_buff *skb)
{
	bump(&classifier_count_map);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
