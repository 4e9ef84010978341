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
	/* Steered TCP connections in flight kept by cookie (kmesh_conn_origin); further ones keep their
	 * origin in socket storage. Small on purpose: the hash's bucket array (16 bytes a bucket) stays
	 * in cache, which a 65,536-bucket one did not (≈ 0.3-0.6 µs a connection more, bench/l4). */
	KMESH_MAX_CONNS = 8192,
	/* Per CPU: origins of connections that have just closed (see kmesh_origin_stash). */
	KMESH_ORIGIN_STASH_SLOTS = 4,
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
	/* The cluster has a kmesh_cluster_policy entry (outlier detection, priorities, least
	 * request, consistent hashing, max_connections or connect timeout): without the flag
	 * the endpoint choice never looks it up. */
	KMESH_CLUSTER_RESILIENT = 0x2,
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
	__u8 level; /* index of its priority level in kmesh_levels (0 without priorities) */
	__u8 pad;
	/* sum of the weights of endpoints 0..index */
	__u32 cum_weight;
};

/* Round-robin cursor per cluster; the lock keeps the order exact across CPUs. */
struct kmesh_rr_value {
	struct bpf_spin_lock lock;
	__u32 next;
};

/* Where a steered socket was going and where it was sent (see kmesh_sock_origin_map.h). */
struct kmesh_sock_origin {
	__u8 vip[16];
	__u8 endpoint[16];
	__u16 vip_port;
	__u16 endpoint_port;
	__u32 cluster_id;
};

/* A steered TCP connection, by socket cookie (kmesh_conn_origin). */
struct kmesh_conn {
	struct kmesh_sock_origin origin;
	__u32 flags; /* KMESH_CONN_*, decided at connect */
	__u32 pad;
};

/* kmesh_conn.flags: what the L4 sockops program has to do for the connection. */
enum kmesh_conn_flags {
	/* the cluster has a kmesh_cluster_policy: count the connection and its outcome */
	KMESH_CONN_TRACKED = 0x1,
	/* ... with a connect timeout (SYN retransmission timeout) */
	KMESH_CONN_SYN_RTO = 0x2,
	/* counted at connect / at close already (nested registrations run the program twice) */
	KMESH_CONN_STARTED = 0x4,
	KMESH_CONN_ENDED = 0x8,
	/* connected to an endpoint's address without being steered: its kmesh_ep_origin entry does not apply */
	KMESH_CONN_DIRECT = 0x10,
	/* kmesh_conn_hint and kmesh_origin_stash only: no origin of its own, the endpoint's kmesh_ep_origin
	 * entry is its origin if any (no hash entry) */
	KMESH_CONN_SHARED = 0x20,
};

/*
 * kmesh_l4_mode[0]: how the daemon runs the L4 programs. KMESH_L4_SOCKOPS: kmesh_l4_sockops is attached
 * to every registered cgroup (set after the attach, never cleared while the pins live), so connect4 may
 * keep origins in kmesh_conn_origin, whose entries that program deletes at close. Without it a plain
 * config pays no L4 sockops at all: origins of their own go to socket storage, freed with the socket.
 */
enum kmesh_l4_mode {
	KMESH_L4_SOCKOPS = 0x1,
};

/* kmesh_ep_origin: a TCP endpoint, the key of the origin its steered connections share. */
struct kmesh_ep_origin_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
};

/* The last TCP connect a CPU steered: its cookie and KMESH_CONN_* flags (kmesh_conn_hint). */
struct kmesh_conn_hint {
	__u64 cookie;
	__u32 flags;
	__u32 pad;
};

/* A connection kept for the rest of the TCP_CLOSE callback that deleted it: the socket's cookie
 * and snd_nxt name it (a socket may connect again after TCP_CLOSE, with a new initial sequence). */
struct kmesh_origin_stash {
	__u64 cookie;
	__u32 snd_nxt;
	__u32 pad;
	struct kmesh_conn conn;
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
 * Resilience (outlier ejection, priority levels, least request, consistent hashing,
 * circuit breaking, connect timeout). Decided in the kernel: cgroup/connect* picks,
 * the L4 sockops program counts what happened to the connection.
 */
enum kmesh_resilience_limits {
	KMESH_MAX_PRIORITIES = 8,
	/* Endpoints of one cluster ejected at the same time (max_ejection_percent caps it further). */
	KMESH_MAX_EJECTED = 16,
	/* An ejected pick moves on to the next endpoint of its level at most this often. */
	KMESH_EJECT_PROBE_STEPS = 16,
	/* Envoy's overprovisioning factor 1.4, in percent. */
	KMESH_OVERPROVISIONING_PCT = 140,
	KMESH_LB_TABLE_CHUNK = 256,
	KMESH_MAX_LB_TABLE_CHUNKS = 65536,
	/* Maglev lookup table entries (prime, Envoy's default); ring hash: the ring is sampled at
	 * 65,536 evenly spaced points of the 32-bit hash space. */
	KMESH_MAGLEV_TABLE_SIZE = 65537,
	KMESH_RING_HASH_BUCKETS = 65536,
};

/* kmesh_cluster_policy.hash_key */
enum kmesh_hash_key {
	KMESH_HASH_CGROUP = 0x1,
	KMESH_HASH_SOURCE = 0x2,
};

/* Per cluster, written by user space; read at connect and by sockops. */
struct kmesh_cluster_policy {
	__u32 consecutive_failures; /* 0: outlier detection off */
	__u32 max_ejection_percent;
	__u64 base_ejection_ns;
	__u64 max_ejection_ns;
	__u64 interval_ns;
	__u32 max_connections; /* 0: unlimited */
	/* connect timeout: SYN retransmission timeout (jiffies) and retransmissions that add
	 * up to it on this kernel (user space does the sum); 0: the kernel's own */
	__u32 syn_rto_jiffies;
	__u32 hash_key; /* KMESH_HASH_* */
	__u32 syn_retries;
};

/* Endpoint set of one generation, grouped by priority level (lowest first). */
struct kmesh_gen_key {
	__u32 cluster_id;
	__u32 generation;
};

struct kmesh_level {
	__u32 start;    /* first endpoint index of the level */
	__u32 count;
	__u32 cum_base; /* cum_weight of the endpoint before start */
	__u32 weight;   /* sum of the level's weights */
};

struct kmesh_levels {
	__u32 level_count;
	__u32 overprovisioning_pct; /* Envoy's overprovisioning factor (CLA policy); 0: KMESH_OVERPROVISIONING_PCT */
	struct kmesh_level level[KMESH_MAX_PRIORITIES];
};

/* Consistent-hash lookup table (maglev, ring hash) of one generation, in chunks. */
struct kmesh_table_key {
	__u32 cluster_id;
	__u32 generation;
	__u32 chunk;
};

struct kmesh_table_chunk {
	__u32 index[KMESH_LB_TABLE_CHUNK]; /* endpoint index in the generation */
};

/* Per endpoint of a cluster; keyed by address, not generation, so it survives a swap. */
struct kmesh_ep_state_key {
	__u8 addr[16];
	__u16 port;
	__u16 pad;
	__u32 cluster_id;
};

struct kmesh_ep_state {
	struct bpf_spin_lock lock;
	__u32 consecutive_failures;
	__s64 active; /* connections from connect() to close; can dip below 0 briefly at attach */
	__u64 ejected_until_ns; /* CLOCK_MONOTONIC */
	__u64 ejections_total;
	__u64 failures_total;
	__u64 connect_timeouts;
	__u32 times_ejected;
	__u32 level;
};

struct kmesh_ejection {
	__u64 until_ns;
	__u32 level;
	__u32 pad;
};

/* Per cluster, created by user space (zeroed), counted by the kernel. */
struct kmesh_cluster_state {
	struct bpf_spin_lock lock;
	__u32 pad;
	__s64 active;
	__u64 overflows;         /* connects refused by max_connections */
	__u64 ejections_total;
	__u64 ejections_refused; /* over max_ejection_percent or KMESH_MAX_EJECTED */
	struct kmesh_ejection ejected[KMESH_MAX_EJECTED];
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
	enum kmesh_resilience_limits resilience_limits;
	enum kmesh_hash_key hash_key;
	enum kmesh_conn_flags conn_flags;
	enum kmesh_l4_mode l4_mode;
};
struct kmesh_maps_exports kmesh_maps_exports KMESH_BTF_EXPORT;

#endif /* KMESH_MAPS_H */
