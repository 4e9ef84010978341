/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The one definition of every key/value layout, enum and limit shared by the kernel
 * programs and the TypeScript runtime: scripts/gen-layouts.mjs generates the TypeScript
 * side from the BTF of the compiled objects (every struct kmesh_*, every enum kmesh_*
 * reachable from BTF). Constants are enums, not #defines, so that BTF carries them.
 *
 * Conventions: addresses are 16 bytes in network byte order, IPv4 as ::ffff:a.b.c.d;
 * ports are host byte order; every struct is padded explicitly so that no implicit
 * hole exists for user space to forget.
 */
#ifndef KMESH_MAPS_H
#define KMESH_MAPS_H

#include <linux/types.h>
#include <linux/bpf.h>

/* Per config: the listener and cluster maps hold two configs, one per slot (see kmesh_active_slot). */
enum kmesh_limits {
	KMESH_MAX_LISTENERS = 16384,
	KMESH_MAX_CLUSTERS = 16384,
	KMESH_CONFIG_SLOTS = 2,
	/* Endpoint entries are double-buffered during a swap (old and new generation). */
	KMESH_MAX_ENDPOINTS = 262144,
	/* log2(KMESH_MAX_ENDPOINTS) + 1: bound of the weighted binary search. */
	KMESH_ENDPOINT_SEARCH_STEPS = 19,
	KMESH_MAX_ROUTE_CLUSTERS = 16,
	KMESH_MAX_TRACKED_SOCKETS = 65536,
};

enum kmesh_lb_policy {
	KMESH_LB_ROUND_ROBIN = 0,
	KMESH_LB_RANDOM = 1,
	KMESH_LB_LEAST_REQUEST = 2,
	KMESH_LB_MAGLEV = 3,
	KMESH_LB_RING_HASH = 4,
};

/* cluster_value.flags */
enum kmesh_cluster_flags {
	KMESH_CLUSTER_UNIFORM_WEIGHTS = 0x1,
};

/*
 * Atomic config switches: listener and cluster entries exist once per slot. The programs read the
 * active slot (kmesh_active_slot[0]) once per connect and look up only that slot's entries; the daemon
 * writes a change into the other slot, then flips the active slot with one update. Whenever the daemon
 * dies, the kernel sees one whole config.
 */
struct kmesh_listener_key {
	__u8 addr[16];
	__u16 port;
	__u8 protocol; /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 slot;
};

struct kmesh_listener_value {
	__u32 cluster_count;
	__u32 total_weight;
	__u32 cluster_ids[KMESH_MAX_ROUTE_CLUSTERS];
	/* cum_weights[i] = sum of the weights of clusters 0..i */
	__u32 cum_weights[KMESH_MAX_ROUTE_CLUSTERS];
};

struct kmesh_cluster_key {
	__u32 id;
	__u32 slot;
};

struct kmesh_cluster_value {
	__u32 lb_policy;
	__u32 generation; /* which endpoint set is live */
	__u32 endpoint_count;
	__u32 total_weight;
	__u32 flags;
	__u32 pad;
};

struct kmesh_endpoint_key {
	__u32 cluster_id;
	__u32 generation;
	__u32 index;
};

struct kmesh_endpoint_value {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
	/* sum of the weights of endpoints 0..index */
	__u32 cum_weight;
};

/* Round-robin cursor per cluster; the lock keeps the order exact across CPUs. */
struct kmesh_rr_value {
	struct bpf_spin_lock lock;
	__u32 next;
};

/* Where a steered socket was going and where it was sent: the socket's local storage. */
struct kmesh_sock_origin {
	__u8 vip[16];
	__u8 endpoint[16];
	__u16 vip_port;
	__u16 endpoint_port;
	__u32 cluster_id;
};

/* UDP replies: (socket, endpoint) -> the VIP the application addressed. */
struct kmesh_udp_reverse_key {
	__u64 cookie;
	__u8 endpoint[16];
	__u16 endpoint_port;
	__u16 pad[3];
};

struct kmesh_udp_reverse_value {
	__u8 vip[16];
	__u16 vip_port;
	__u16 pad;
};

/*
 * Puts the enums into BTF (a type reaches BTF only when something typed uses it). The
 * section is never loaded: libbpf skips .debug_* sections, and nothing reads the
 * variable. Add a member for every new enum.
 */
#define KMESH_BTF_EXPORT __attribute__((section(".debug_kmesh_exports"), used))
struct kmesh_maps_exports {
	enum kmesh_limits limits;
	enum kmesh_lb_policy lb_policy;
	enum kmesh_cluster_flags cluster_flags;
};
struct kmesh_maps_exports kmesh_maps_exports KMESH_BTF_EXPORT;

#endif /* KMESH_MAPS_H */
