/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The configuration ABI of bpfman-load's multi-program dispatchers, written
 * from the libxdp protocol's description (docs/dispatcher-protocol.md): the
 * XDP layout is libxdp's v2 (magic 236, version 2), and the TC dispatcher
 * uses the same layout with its own magic. The Rust encoding in
 * bpfman-load/src/dispatcher.rs is checked against this header field by
 * field, through the BTF of the compiled dispatchers.
 *
 * With DISPATCHER_V3 defined the struct is libxdp's v3 layout (libxdp 1.6
 * and later): v2 and one more byte, is_xdp_devbound. That build
 * (xdp_dispatcher_v3.bpf.c) exists only to join and extend dispatchers
 * that libxdp made at version 3; our own chains use v2.
 */
#ifndef BPFMAN_DISPATCHER_H
#define BPFMAN_DISPATCHER_H

#include <linux/types.h>

#define DISPATCHER_SLOTS 10
#define XDP_DISPATCHER_MAGIC 236
#define TC_DISPATCHER_MAGIC 237
#define DISPATCHER_VERSION 2

/* What an empty slot's stub returns. Bit 31 of every slot's
 * chain_call_actions is set, so a stub never stops the chain: XDP tests
 * bit `ret`, TC tests bit `ret + 1` (TC_ACT_UNSPEC is -1). */
#define XDP_STUB_RET 31
#define TC_STUB_RET 30

struct dispatcher_config {
	__u8 magic;
	__u8 dispatcher_version;
	__u8 num_progs_enabled;
	__u8 is_xdp_frags;
	__u32 chain_call_actions[DISPATCHER_SLOTS];
	__u32 run_prios[DISPATCHER_SLOTS];
	__u32 program_flags[DISPATCHER_SLOTS];
#ifdef DISPATCHER_V3
	__u8 is_xdp_devbound;
#endif
};

#endif
