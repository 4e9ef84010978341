/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * L7 (HTTP/1.x first-request routing): the one definition of its limits and of every
 * key/value layout shared by bpf/kmesh_l7.bpf.c, the connect4 hand-off and the
 * TypeScript runtime (src/l7/layouts.ts, checked against BTF; src/l7/limits.ts exports
 * the limits to config validation).
 *
 * Strings from the request are matched by a 64-bit polynomial hash of their bytes,
 * H(s) = sum s[i] * B^(n-1-i) mod 2^64 (B = KMESH_L7_HASH_BASE): the kernel keeps the
 * hash of every prefix of a captured string while it scans, so an exact or prefix match
 * is one comparison, and a suffix is H(s) - H(prefix) * B^n. User space hashes the
 * configured values the same way.
 */
#ifndef KMESH_L7_H
#define KMESH_L7_H

#include <linux/types.h>
#include <linux/bpf.h>
#include "kmesh_maps.h"

/* --- limits (exported to TypeScript by src/l7/limits.ts; config over them is refused) --- */
/* Routes per virtual host. */
#define KMESH_L7_MAX_ROUTES 16
/* Header matchers per route (the method counts as one). */
#define KMESH_L7_MAX_ROUTE_HEADERS 8
/* Distinct header names the routes of one listener look at (besides :method and :authority). */
#define KMESH_L7_MAX_HEADER_NAMES 8
/* Longest matched string: path (with query), Host, header value, method; and every configured value. */
#define KMESH_L7_MAX_STRING 128
/* Bytes of the first request scanned for the request line and headers; later headers are not seen. */
#define KMESH_L7_MAX_PARSE 2048
/* Endpoints of a cluster used by L7 routes. */
#define KMESH_L7_MAX_CLUSTER_ENDPOINTS 64
/* Weighted clusters of one route (same as the L4 split). */
#define KMESH_L7_MAX_ROUTE_CLUSTERS 16
#define KMESH_L7_MAX_LISTENERS 1024
#define KMESH_L7_MAX_VHOSTS 4096
#define KMESH_L7_MAX_DOMAINS 16384
#define KMESH_L7_MAX_POOLS 4096
#define KMESH_L7_MAX_CONNS 65536

/* Capture slots of one request: fixed ones, then the listener's header names. */
#define KMESH_L7_SLOT_PATH 0
#define KMESH_L7_SLOT_HOST 1
#define KMESH_L7_SLOT_METHOD 2
#define KMESH_L7_SLOT_HEADERS 3
#define KMESH_L7_SLOTS (KMESH_L7_SLOT_HEADERS + KMESH_L7_MAX_HEADER_NAMES)

#define KMESH_L7_HASH_BASE 0x100000001b3ULL

/* kmesh_l7_domain_key.kind, in the order a Host is tried (Envoy's). */
enum kmesh_l7_domain_kind {
	KMESH_L7_DOMAIN_EXACT = 0,
	KMESH_L7_DOMAIN_SUFFIX = 1, /* "*.example.com": hash of ".example.com", Host longer */
	KMESH_L7_DOMAIN_PREFIX = 2, /* "api.*": hash of "api.", Host longer */
	KMESH_L7_DOMAIN_ANY = 3,    /* "*": hash 0 */
};

/* kmesh_l7_matcher.kind */
enum kmesh_l7_match_kind {
	KMESH_L7_MATCH_EXACT = 0,
	KMESH_L7_MATCH_PREFIX = 1,
	KMESH_L7_MATCH_SUFFIX = 2,
	KMESH_L7_MATCH_PRESENT = 3,
	/* path only: the prefix followed by '/', '?' or the end of the path */
	KMESH_L7_MATCH_SEPARATED_PREFIX = 4,
};

/* kmesh_l7_listener.flags: which domain kinds exist (saves lookups for the others) */
#define KMESH_L7_HAS_SUFFIX_DOMAINS 0x1
#define KMESH_L7_HAS_PREFIX_DOMAINS 0x2
#define KMESH_L7_HAS_ANY_DOMAIN 0x4

/* The clusters of a route action (or of a listener's default route), split by weight. */
struct kmesh_l7_split {
	__u32 cluster_count;
	__u32 total_weight;
	__u32 cluster_ids[KMESH_L7_MAX_ROUTE_CLUSTERS];
	/* cum_weights[i] = sum of the weights of clusters 0..i */
	__u32 cum_weights[KMESH_L7_MAX_ROUTE_CLUSTERS];
};

/* Keyed by struct kmesh_listener_key (the VIP and port apps dial). */
struct kmesh_l7_listener {
	__u32 listener_id;
	__u32 flags;
	/* Where connect4 sends the connection: the daemon's anchor listener (both network order). */
	__u32 anchor_ip4;
	__u16 anchor_port;
	__u16 pad;
	/* For what is not HTTP/1.x or matches no route. */
	struct kmesh_l7_split fallback;
};

struct kmesh_l7_domain_key {
	__u64 hash;
	__u32 listener_id;
	__u32 kind;
};

/* Header names a listener's routes look at, and "host": (listener, hash of the lower-case name) → slot. */
struct kmesh_l7_header_key {
	__u64 hash;
	__u32 listener_id;
	__u32 pad;
};

struct kmesh_l7_vhost {
	__u32 route_count;
	/* routes are kmesh_l7_route_key { vhost_id, 0..route_count-1 } */
	__u32 pad;
};

struct kmesh_l7_route_key {
	__u32 vhost_id;
	__u32 index;
};

struct kmesh_l7_matcher {
	__u64 hash;
	__u16 len;
	__u8 slot;
	__u8 kind;
	__u8 invert;
	__u8 pad[3];
};

/* kmesh_l7_route.hash_kind: where a route's consistent-hash key comes from (Envoy's RouteAction.hash_policy) */
enum kmesh_l7_hash_kind {
	KMESH_L7_HASH_NONE = 0,
	KMESH_L7_HASH_HEADER = 1, /* the value of the header captured in hash_slot */
	KMESH_L7_HASH_COOKIE = 2, /* the value of the cookie named by cookie_hash/cookie_len in the Cookie header (hash_slot) */
};

struct kmesh_l7_route {
	/* Global id, the key of the per-route counters. */
	__u32 route_id;
	__u32 matcher_count;
	/* Path (if any) first: matchers[0] with slot KMESH_L7_SLOT_PATH. */
	struct kmesh_l7_matcher matchers[KMESH_L7_MAX_ROUTE_HEADERS + 1];
	struct kmesh_l7_split action;
	/* Used when the chosen cluster is maglev / ring_hash: its kmesh_lb_table picks the endpoint. */
	__u32 hash_kind;
	__u32 hash_slot;
	__u32 cookie_len;
	__u32 pad;
	__u64 cookie_hash;
};

/* kmesh_l7_cluster.table_pos: the L4 endpoint index names no pool of this cluster (an IPv6 endpoint) */
#define KMESH_L7_NO_POS 0xffffffff

/* Endpoints of a cluster as pools, for L7; written next to the L4 cluster entry. */
struct kmesh_l7_cluster {
	__u32 endpoint_count;
	__u32 total_weight;
	__u32 pool_ids[KMESH_L7_MAX_CLUSTER_ENDPOINTS];
	__u32 cum_weights[KMESH_L7_MAX_CLUSTER_ENDPOINTS];
	/* L4 endpoint index (what kmesh_lb_table holds) → position in pool_ids, or KMESH_L7_NO_POS */
	__u32 table_pos[KMESH_L7_MAX_CLUSTER_ENDPOINTS];
	/* Each position's endpoint as kmesh_ep_state keys it (its ejection): IPv4 in network
	 * order, port in host order. */
	__u32 ep_ip4[KMESH_L7_MAX_CLUSTER_ENDPOINTS];
	__u16 ep_port[KMESH_L7_MAX_CLUSTER_ENDPOINTS];
	/* Circuit breaker max_requests: routed connections of the cluster open at once (HTTP/1.1:
	 * one request in flight each; kmesh_l7_requests counts them); 0: unlimited. */
	__u32 max_requests;
	__u32 pad;
};

/*
 * A TCP connection as seen from one of its ends, ports in network order. Key of the
 * client and upstream socket hashes and of the per-connection state.
 */
struct kmesh_l7_tuple {
	__u32 local_ip4;
	__u32 remote_ip4;
	__u16 local_port;
	__u16 remote_port;
};

/*
 * One pool slot: the upstream socket is ready while filled bit != taken bit. User space
 * alone flips filled (after putting the socket in kmesh_l7_upstreams and the tuple in
 * kmesh_l7_pool_slots), the programs alone flip taken, under the lock.
 */
struct kmesh_l7_pool_taken {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 taken;
};

/* kmesh_l7_conn.state */
enum kmesh_l7_conn_state {
	KMESH_L7_CONN_NEW = 0,	     /* first request not seen yet */
	KMESH_L7_CONN_SPLICED = 1,   /* bytes go to upstream (kernel) */
	KMESH_L7_CONN_SLOW = 2,	     /* no pooled socket: the daemon connects and splices */
	KMESH_L7_CONN_DRAINING = 3,  /* the upstream closed: the client's sends reach the anchor (the drain marker) */
	KMESH_L7_CONN_OVERFLOW = 4,  /* over the cluster's max_requests: the daemon answers 503 */
};

/*
 * What the daemon tells the kernel's outlier detection and circuit-breaker counters: one
 * KMESH_L7_REPORT_LEN-byte record per event on its report socket, whose verdict
 * (kmesh_l7_report_verdict) applies it with the rule the L4 and L7 programs use
 * (kmesh_outlier.h), so user space never writes a counter the kernel also writes.
 */
enum kmesh_l7_report_kind {
	KMESH_L7_REPORT_CONNECT_FAILED = 1, /* a pool or slow-path connect was refused (or unreachable) */
	KMESH_L7_REPORT_CONNECT_TIMEOUT = 2, /* a pool or slow-path connect timed out */
	KMESH_L7_REPORT_OVERFLOW = 3,	     /* a request refused by max_pending_requests */
};

struct kmesh_l7_report {
	__u32 cluster_id;
	__u32 ip4;  /* network order */
	__u16 port; /* host order (as kmesh_ep_state keys it) */
	__u8 kind;  /* enum kmesh_l7_report_kind */
	__u8 pad;
	__u32 pad2;
};

/*
 * Upstream→client bytes reach the client through its socket's backlog (a kernel work item),
 * after the upstream's FIN has reached the daemon. Before the daemon passes the FIN on, it
 * sends a drain marker through the same backlog, behind those bytes: KMESH_L7_MARKER_LEN bytes
 * on its marker socket, whose verdict takes the next client of kmesh_l7_marker_ring and
 * redirects the marker out of that client's socket to the anchor. The marker reaching the
 * anchor proves every byte queued before it is in the client's receive queue.
 */

/* The limits user space shares (src/abi/kernel.ts, generated): enums, so that BTF carries them. */
enum kmesh_l7_limits {
	/* Pre-connected upstream sockets per endpoint (bits of one word). */
	KMESH_L7_POOL_SLOTS = 64,
	KMESH_L7_MARKER_LEN = 16,
	KMESH_L7_MARKER_RING = 4096,
	KMESH_L7_REPORT_LEN = 16,
	/* Longest header or cookie name of a hash policy. */
	KMESH_L7_HASH_NAME_MAX = 64,
	/* Bytes of a header value hashed (longer values: their first bytes), and bytes of the Cookie
	 * header searched for the named cookie (a cookie not wholly inside them counts as absent). */
	KMESH_L7_HASH_VALUE_MAX = KMESH_L7_MAX_STRING,
};

/* See kmesh_maps_exports. */
struct kmesh_l7_exports {
	enum kmesh_l7_limits limits;
	enum kmesh_l7_hash_kind hash_kind;
	enum kmesh_l7_report_kind report_kind;
	struct kmesh_l7_report report;
};
struct kmesh_l7_exports kmesh_l7_exports KMESH_BTF_EXPORT;

/* Per client connection, keyed by the client's tuple. */
struct kmesh_l7_conn {
	__u32 state;
	__u32 route_id;	  /* ~0: default route */
	__u32 cluster_id;
	__u32 pool_id;	  /* chosen endpoint */
	struct kmesh_l7_tuple upstream;
	struct kmesh_listener_key listener;
	__u32 responded;  /* the upstream's first response was seen (outlier detection) */
};

/* kmesh_l7_counters index (per CPU) */
enum kmesh_l7_counter {
	KMESH_L7_CNT_CONNECTIONS = 0,	 /* clients handed to the anchor and put in the hash */
	KMESH_L7_CNT_ROUTED = 1,	 /* first request matched a route */
	KMESH_L7_CNT_NOT_HTTP = 2,	 /* first bytes are not HTTP/1.x: default route */
	KMESH_L7_CNT_INCOMPLETE = 3,	 /* headers did not end in the first send: default route */
	KMESH_L7_CNT_NO_ROUTE = 4,	 /* HTTP, no route matched: default route */
	KMESH_L7_CNT_POOL_HIT = 5,	 /* first request went to a pre-connected socket */
	KMESH_L7_CNT_SLOW_PATH = 6,	 /* pool empty: handed to the daemon */
	KMESH_L7_CNT_LATER_MISMATCH = 7, /* a later request on the connection would match another route */
	KMESH_L7_CNT_NO_ENDPOINT = 8,	 /* chosen cluster has no endpoint: connection dropped */
	KMESH_L7_CNT_TRUNCATED = 9,	 /* head longer than KMESH_L7_MAX_PARSE: routed on what was seen */
	KMESH_L7_CNT_HASHED = 10,	 /* endpoint chosen by the route's hash key (maglev / ring_hash) */
	KMESH_L7_CNT_HASH_KEY_ABSENT = 11, /* the route hashes but the request lacks the key: weighted pick */
	KMESH_L7_CNT_OVERFLOW = 12,	 /* over the cluster's max_requests: answered 503 by the daemon */
	KMESH_L7_COUNTERS = 13,
};

/* Socket-local mark connect4 leaves on a connection it handed to the anchor. */
struct kmesh_l7_sock {
	/* the kmesh_l7_listeners key that matched (the port's wildcard, maybe) */
	struct kmesh_listener_key listener;
};

/* kmesh_l7_route_stats key: per route and destination cluster (route_id ~0 = default route). */
struct kmesh_l7_route_stat_key {
	__u32 route_id;
	__u32 cluster_id;
};

#endif /* KMESH_L7_H */
