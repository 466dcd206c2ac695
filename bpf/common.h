/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by the test programs: one place for the includes and the licence
 * string, so every object is built the same way for bpfel and bpfeb.
 */
#ifndef BPFMAN_TEST_COMMON_H
#define BPFMAN_TEST_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/*
 * A per-CPU counter map; each program that counts declares its own so the
 * map labels of every object are distinct and meaningful.
 */
#define COUNTER_MAP(name)                                 \
	struct {                                              \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);          \
		__uint(max_entries, 1);                           \
		__type(key, __u32);                               \
		__type(value, __u64);                             \
	} name SEC(".maps")

static __always_inline void bump(void *map)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(map, &key);

	if (v)
		*v += 1;
}

#endif
