// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A well-formed object the kernel's verifier must reject: it reads packet
 * data without checking it against data_end. Tests expect the verifier's
 * log in the error, and nothing left behind.
 */
#include "common.h"

SEC("xdp")
int unchecked_read(struct xdp_md *ctx)
{
	__u8 *data = (__u8 *)(long)ctx->data;

	return data[0] ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
