// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The smallest useful XDP program: lets every packet through. */
#include "common.h"

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
