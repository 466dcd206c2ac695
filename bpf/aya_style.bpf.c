// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Section names as aya-based tooling wrote them before it followed libbpf:
 * the kind, a slash, then the program's own name. libbpf knows none of
 * these; aya 0.14 knows none of the `xdp/<name>` ones. A third function
 * sits in a section no loader knows, as stray code in real objects does.
 */
#include "common.h"

COUNTER_MAP(aya_count_map);

SEC("xdp/aya_count")
int aya_count(struct xdp_md *ctx)
{
	bump(&aya_count_map);
	return XDP_PASS;
}

SEC("xdp/aya_drop")
int aya_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

SEC("warp/drive")
int stray(void *ctx)
{
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
