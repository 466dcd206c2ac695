// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* fentry and fexit on a kernel function (needs BTF and a kernel that allows tracing programs). */
#include "common.h"

COUNTER_MAP(fentry_count_map);
COUNTER_MAP(fexit_count_map);

SEC("fentry/do_unlinkat")
int fentry_unlinkat(__u64 *ctx)
{
	bump(&fentry_count_map);
	return 0;
}

SEC("fexit/do_unlinkat")
int fexit_unlinkat(__u64 *ctx)
{
	bump(&fexit_count_map);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
