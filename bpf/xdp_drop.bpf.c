// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Drops every packet; uses libbpf's frags-aware section name. */
#include "common.h"

SEC("xdp.frags")
int xdp_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
