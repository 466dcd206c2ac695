// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The XDP dispatcher with libxdp's v3 configuration layout (one more byte,
 * is_xdp_devbound), for joining dispatchers libxdp 1.6 and later made.
 * The program is the same as xdp_dispatcher.bpf.c's.
 */
#define DISPATCHER_V3 1
#include "xdp_dispatcher.bpf.c"
