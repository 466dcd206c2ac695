// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Counts packets and bytes in a per-CPU array, and returns a verdict that can
 * be set at load time through the read-only global `verdict` (XDP_PASS by
 * default), so tests can exercise global data and chain behaviour.
 */
#include "common.h"

struct datarec {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct datarec);
} xdp_stats_map SEC(".maps");

volatile const __u32 verdict = XDP_PASS;

SEC("xdp")
int xdp_stats(struct xdp_md *ctx)
{
	__u32 key = 0;
	struct datarec *rec = bpf_map_lookup_elem(&xdp_stats_map, &key);

	if (rec) {
		rec->packets += 1;
		rec->bytes += ctx->data_end - ctx->data;
	}
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
