// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A BPF LSM program on the file_open hook: counts every file opened and
 * allows it (returns 0). The kernel takes it only when booted with "bpf"
 * in its lsm= list.
 */
#include "common.h"

COUNTER_MAP(lsm_count_map);

SEC("lsm/file_open")
int lsm_file_open(unsigned long long *ctx)
{
	bump(&lsm_count_map);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
