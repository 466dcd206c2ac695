// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A uprobe and a uretprobe with no target in the section name: the target
 * binary and function are chosen at attach time.
 */
#include "common.h"

COUNTER_MAP(uprobe_count_map);
COUNTER_MAP(uretprobe_count_map);

SEC("uprobe")
int uprobe_count(void *ctx)
{
	bump(&uprobe_count_map);
	return 0;
}

SEC("uretprobe")
int uretprobe_count(void *ctx)
{
	bump(&uretprobe_count_map);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
