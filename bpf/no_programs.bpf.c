// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* Bad input for the image builder: a valid eBPF object that holds maps but no program. */
#include "common.h"

COUNTER_MAP(orphan_map);

char LICENSE[] SEC("license") = "Dual BSD/GPL";
