// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * An XDP program that declares its own place in a dispatcher chain the
 * libxdp way: a BTF-defined struct `_<function>` in `.xdp_run_config`
 * giving its priority and the actions after which the chain goes on.
 * (Struct members have their own name space, so XDP_PASS names a member.)
 */
#include "common.h"

COUNTER_MAP(run_config_count_map);

struct {
	__uint(priority, 5);
	__uint(XDP_PASS, 1);
	__uint(XDP_DROP, 1);
} _xdp_first SEC(".xdp_run_config");

SEC("xdp")
int xdp_first(struct xdp_md *ctx)
{
	bump(&run_config_count_map);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
