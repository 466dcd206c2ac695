// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Counts getpid() calls through the syscall tracepoint. */
#include "common.h"

COUNTER_MAP(getpid_count_map);

SEC("tracepoint/syscalls/sys_enter_getpid")
int tp_getpid(void *ctx)
{
	bump(&getpid_count_map);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
