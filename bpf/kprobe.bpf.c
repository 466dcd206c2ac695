// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* A kprobe and a kretprobe; they only count, so no pt_regs layout is needed. */
#include "common.h"

COUNTER_MAP(kprobe_count_map);
COUNTER_MAP(kretprobe_count_map);

SEC("kprobe/do_sys_openat2")
int kprobe_openat(void *ctx)
{
	bump(&kprobe_count_map);
	return 0;
}

SEC("kretprobe/do_sys_openat2")
int kretprobe_openat(void *ctx)
{
	bump(&kretprobe_count_map);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
