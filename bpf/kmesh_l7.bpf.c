// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kmesh-orchestration, L7: route an HTTP/1.x connection by its first request, in the
 * kernel, onto an upstream socket the daemon connected in advance.
 *
 *  - connect4 (kmesh_l4.bpf.c, kmesh_l7_handoff.h) sent the client to the daemon's
 *    anchor listener and marked the socket with its listener;
 *  - kmesh_l7_sockops puts the established client socket into kmesh_l7_clients;
 *  - kmesh_l7_msg runs on the client's sends: the first request is parsed (request
 *    line, Host, the headers the routes name), matched against the listener's virtual
 *    hosts and routes, a cluster (weighted) and endpoint (weighted) are chosen, a ready
 *    socket is taken from the endpoint's pool and the bytes are redirected to it; later
 *    sends follow the same redirect;
 *  - kmesh_l7_upstream_verdict runs on what the upstream sends and redirects it to the
 *    client's receive queue.
 * Nothing waits on user space. When the pool is empty the bytes go to the anchor's
 * accepted socket and the daemon splices (the slow path, counted); closes are
 * propagated by the daemon, which owns both the accepted and the upstream sockets.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "kmesh_maps.h"
#include "kmesh_l7.h"
#include "kmesh_l7_handoff.h"
#include "kmesh_lb_maps.h"
#include "kmesh_outlier.h"

#define AF_INET 2
#define NO_SLOT 0xff
#define NO_ROUTE 0xffffffff

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KMESH_L7_MAX_CONNS);
	__type(key, struct kmesh_l7_tuple);
	__type(value, __u64);
} kmesh_l7_clients SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KMESH_L7_MAX_CONNS);
	__type(key, struct kmesh_l7_tuple);
	__type(value, __u64);
} kmesh_l7_upstreams SEC(".maps");

/* Client tuple → state; the daemon deletes the entry when it closes the pair. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KMESH_L7_MAX_CONNS);
	__type(key, struct kmesh_l7_tuple);
	__type(value, struct kmesh_l7_conn);
} kmesh_l7_conns SEC(".maps");

/* Upstream tuple → the client it serves. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KMESH_L7_MAX_CONNS);
	__type(key, struct kmesh_l7_tuple);
	__type(value, struct kmesh_l7_tuple);
} kmesh_l7_peers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_L7_MAX_DOMAINS);
	__type(key, struct kmesh_l7_domain_key);
	__type(value, __u32); /* vhost id */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_domains SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_L7_MAX_LISTENERS * KMESH_L7_MAX_HEADER_NAMES);
	__type(key, struct kmesh_l7_header_key);
	__type(value, __u32); /* capture slot */
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_header_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_L7_MAX_VHOSTS);
	__type(key, __u32);
	__type(value, struct kmesh_l7_vhost);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_vhosts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_L7_MAX_VHOSTS * KMESH_L7_MAX_ROUTES);
	__type(key, struct kmesh_l7_route_key);
	__type(value, struct kmesh_l7_route);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_routes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, __u32);
	__type(value, struct kmesh_l7_cluster);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_clusters SEC(".maps");

/* Pool id * KMESH_L7_POOL_SLOTS + slot → the pooled socket's tuple. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KMESH_L7_MAX_POOLS * KMESH_L7_POOL_SLOTS);
	__type(key, __u32);
	__type(value, struct kmesh_l7_tuple);
} kmesh_l7_pool_slots SEC(".maps");

/* Written by user space only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KMESH_L7_MAX_POOLS);
	__type(key, __u32);
	__type(value, __u64);
} kmesh_l7_pool_filled SEC(".maps");

/* Written by the programs only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KMESH_L7_MAX_POOLS);
	__type(key, __u32);
	__type(value, struct kmesh_l7_pool_taken);
} kmesh_l7_pool_taken SEC(".maps");

/* The daemon's marker socket (key 0). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kmesh_l7_markers SEC(".maps");

/* Clients awaiting a drain marker, in the order their markers are written (the daemon writes slot tail). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KMESH_L7_MARKER_RING);
	__type(key, __u32);
	__type(value, struct kmesh_l7_tuple);
} kmesh_l7_marker_ring SEC(".maps");

/* Markers consumed so far (the ring's head); only the marker verdict writes it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kmesh_l7_marker_head SEC(".maps");

/* The daemon's report socket (key 0): see struct kmesh_l7_report. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kmesh_l7_reports SEC(".maps");

/* Cluster id → its routed connections open now, for clusters with max_requests. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, __u32);
	__type(value, __s64);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_requests SEC(".maps");

/* Client tuple → the cluster whose kmesh_l7_requests counts it; deleted (and uncounted) at the client's close. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_L7_MAX_CONNS);
	__type(key, struct kmesh_l7_tuple);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KMESH_L7_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} kmesh_l7_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, struct kmesh_l7_route_stat_key);
	__type(value, __u64);
} kmesh_l7_route_stats SEC(".maps");

/* What the parser captured of one string of the request. */
struct kmesh_l7_capture {
	__u16 len;
	__u16 query; /* path: offset of '?', else len */
	__u8 present;
	__u8 truncated;
	__u8 pad[2];
	__u8 bytes[KMESH_L7_MAX_STRING];
	/* prefix[k]: hash of bytes[0..k) */
	__u64 prefix[KMESH_L7_MAX_STRING + 1];
};

/*
 * i clamped to max (a constant) by instructions of its own, right where it is used: older
 * verifiers (6.1) do not carry a bound checked on a register over to a copy the compiler
 * spilled before the check, and the compiler drops a C clamp it can prove redundant.
 */
#define bounded(i, max)                                                                  \
	({                                                                               \
		__u64 __v = (i);                                                         \
		asm volatile("if %0 <= %1 goto +1; %0 = %1" : "+r"(__v) : "i"(max));     \
		__v;                                                                     \
	})

/* hash of bytes[from..to) of a capture: the polynomial hash's substring identity */
static __always_inline __u64 substring_hash(const struct kmesh_l7_capture *cap, const __u64 *pow, __u32 from, __u32 to)
{
	/* each bound on its own: the verifier does not relate two registers */
	if (from > KMESH_L7_MAX_STRING || to > KMESH_L7_MAX_STRING || from > to)
		return 0;
	to = bounded(to, KMESH_L7_MAX_STRING);
	from = bounded(from, KMESH_L7_MAX_STRING);
	return cap->prefix[to] - cap->prefix[from] * pow[bounded(to - from, KMESH_L7_MAX_STRING)];
}

enum parse_state {
	P_METHOD = 0,
	P_TARGET,
	P_VERSION,
	P_NAME,
	P_VALUE_SPACE,
	P_VALUE,
	P_SKIP_VALUE,
};

/*
 * Parser state lives in this per-CPU value, not in registers: the verifier then sees
 * unknown values at each loop iteration and prunes, instead of following every state
 * combination. One program runs at a time per CPU and does not sleep.
 */
struct kmesh_l7_scratch {
	__u32 state;
	__u32 slot;
	__u32 tok_len;
	__u32 done; /* 1: end of headers seen; 2: not HTTP */
	__u64 name_hash;
	__u32 listener_id;
	__u32 pow_ready;
	/* 1: a later request of a spliced connection, parsed only to be compared with the route kept */
	__u32 later;
	/* the chosen route's hash policy (kmesh_l7_route), for the hash stage */
	__u32 hash_kind;
	__u32 hash_slot;
	__u32 cookie_len;
	__u64 cookie_hash;
	/* hash stage → pool stage: position in the cluster's pool_ids, or KMESH_L7_NO_POS */
	__u32 hash_pos;
	/* cookie search state, here (not in registers) so that the verifier prunes */
	__u32 ck_start;
	__u32 ck_eq;
	__u32 ck_skip;
	/* pow[k] = B^k */
	__u64 pow[2 * KMESH_L7_MAX_STRING];
	struct kmesh_l7_capture slots[KMESH_L7_SLOTS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kmesh_l7_scratch);
} kmesh_l7_scratch SEC(".maps");

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&kmesh_l7_counters, &which);

	/* atomic: sockops may interrupt a send on the same CPU (softirq) */
	if (n)
		__sync_fetch_and_add(n, 1);
}

static __always_inline void count_route(__u32 route_id, __u32 cluster_id)
{
	struct kmesh_l7_route_stat_key key = { .route_id = route_id, .cluster_id = cluster_id };
	__u64 one = 1, *n = bpf_map_lookup_elem(&kmesh_l7_route_stats, &key);

	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&kmesh_l7_route_stats, &key, &one, BPF_NOEXIST);
}

static __always_inline __u8 lower(__u8 c)
{
	return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static __always_inline void capture_byte(struct kmesh_l7_scratch *sc, __u32 slot, __u8 c)
{
	struct kmesh_l7_capture *cap;
	__u32 n;

	if (slot >= KMESH_L7_SLOTS)
		return;
	cap = &sc->slots[slot];
	n = cap->len;
	if (n >= KMESH_L7_MAX_STRING) {
		cap->truncated = 1;
		return;
	}
	if (slot == KMESH_L7_SLOT_HOST)
		c = lower(c);
	if (slot == KMESH_L7_SLOT_PATH && c == '?' && cap->query == 0xffff)
		cap->query = n;
	cap->bytes[n] = c;
	cap->prefix[n + 1] = cap->prefix[n] * KMESH_L7_HASH_BASE + c;
	cap->len = n + 1;
}

static __always_inline void finish_capture(struct kmesh_l7_scratch *sc, __u32 slot)
{
	struct kmesh_l7_capture *cap;

	if (slot >= KMESH_L7_SLOTS)
		return;
	cap = &sc->slots[slot];
	cap->present = 1;
	if (cap->query == 0xffff && !cap->truncated)
		cap->query = cap->len;
}

static __always_inline __u32 header_slot(struct kmesh_l7_scratch *sc)
{
	struct kmesh_l7_header_key key = { .hash = sc->name_hash, .listener_id = sc->listener_id };
	__u32 *slot;

	slot = bpf_map_lookup_elem(&kmesh_l7_header_names, &key);
	if (!slot || *slot >= KMESH_L7_SLOTS)
		return NO_SLOT;
	/* the first occurrence of a header is the one matched */
	if (sc->slots[*slot].present || sc->slots[*slot].len)
		return NO_SLOT;
	return *slot;
}

/* "HTTP/1."[n] */
static __always_inline __u8 http_version_byte(__u32 n)
{
	switch (n) {
	case 0:
		return 'H';
	case 1:
	case 2:
		return 'T';
	case 3:
		return 'P';
	case 4:
		return '/';
	case 5:
		return '1';
	default:
		return '.';
	}
}

/* One byte of the request head. Returns 1 when parsing is over (done says why). */
static __always_inline int parse_byte(struct kmesh_l7_scratch *sc, __u8 c)
{
	__u32 st = sc->state;

	if (c == '\r')
		return 0;
	if (c == '\n') {
		if (st == P_NAME && sc->tok_len == 0) {
			sc->done = 1;
			return 1;
		}
		if (st < P_VERSION || (st == P_VERSION && sc->tok_len < 8)) {
			sc->done = 2;
			return 1;
		}
		if (st == P_VALUE || st == P_VALUE_SPACE)
			finish_capture(sc, sc->slot);
		sc->state = P_NAME;
		sc->tok_len = 0;
		sc->name_hash = 0;
		return 0;
	}
	switch (st) {
	case P_METHOD:
		if (c == ' ' && sc->tok_len > 0) {
			finish_capture(sc, KMESH_L7_SLOT_METHOD);
			sc->state = P_TARGET;
			sc->tok_len = 0;
			return 0;
		}
		if (c < 'A' || c > 'Z' || sc->tok_len >= 16) {
			sc->done = 2;
			return 1;
		}
		capture_byte(sc, KMESH_L7_SLOT_METHOD, c);
		sc->tok_len++;
		return 0;
	case P_TARGET:
		if (c == ' ') {
			finish_capture(sc, KMESH_L7_SLOT_PATH);
			sc->state = P_VERSION;
			sc->tok_len = 0;
			return 0;
		}
		capture_byte(sc, KMESH_L7_SLOT_PATH, c);
		return 0;
	case P_VERSION: {
		__u32 n = sc->tok_len;

		if (n < 7 && c != http_version_byte(n)) {
			sc->done = 2;
			return 1;
		}
		sc->tok_len = n + 1;
		return 0;
	}
	case P_NAME:
		if (c == ':') {
			sc->slot = header_slot(sc);
			sc->state = sc->slot == NO_SLOT ? P_SKIP_VALUE : P_VALUE_SPACE;
			return 0;
		}
		sc->name_hash = sc->name_hash * KMESH_L7_HASH_BASE + lower(c);
		sc->tok_len++;
		return 0;
	case P_VALUE_SPACE:
		if (c == ' ' || c == '\t')
			return 0;
		sc->state = P_VALUE;
		capture_byte(sc, sc->slot, c);
		return 0;
	case P_VALUE:
		capture_byte(sc, sc->slot, c);
		return 0;
	default:
		return 0;
	}
}

static __always_inline void reset(struct kmesh_l7_scratch *sc, __u32 listener_id, __u32 later)
{
	int i;

	sc->later = later;
	sc->state = P_METHOD;
	sc->slot = NO_SLOT;
	sc->tok_len = 0;
	sc->done = 0;
	sc->name_hash = 0;
	sc->listener_id = listener_id;
#pragma unroll
	for (i = 0; i < KMESH_L7_SLOTS; i++) {
		sc->slots[i].len = 0;
		sc->slots[i].query = 0xffff;
		sc->slots[i].present = 0;
		sc->slots[i].truncated = 0;
		sc->slots[i].prefix[0] = 0;
	}
	if (!sc->pow_ready) {
		__u64 p = 1;

		for (i = 0; i < 2 * KMESH_L7_MAX_STRING; i++) {
			sc->pow[i] = p;
			p *= KMESH_L7_HASH_BASE;
		}
		sc->pow_ready = 1;
	}
}

static __always_inline int matches(const struct kmesh_l7_scratch *sc, const struct kmesh_l7_matcher *m)
{
	const struct kmesh_l7_capture *cap;
	__u32 n = m->len, end;
	int r;

	if (m->slot >= KMESH_L7_SLOTS || n > KMESH_L7_MAX_STRING)
		return 0;
	n = bounded(n, KMESH_L7_MAX_STRING);
	cap = &sc->slots[bounded(m->slot, KMESH_L7_SLOTS - 1)];
	/* the path is compared without its query, except by a plain prefix (as Envoy does) */
	end = m->slot == KMESH_L7_SLOT_PATH ? cap->query : cap->len;
	switch (m->kind) {
	case KMESH_L7_MATCH_PRESENT:
		r = cap->present;
		break;
	case KMESH_L7_MATCH_EXACT:
		r = cap->present && n == end && end <= cap->len && (!cap->truncated || end < cap->len) &&
		    cap->prefix[n] == m->hash;
		break;
	case KMESH_L7_MATCH_PREFIX:
		r = cap->present && n <= cap->len && cap->prefix[n] == m->hash;
		break;
	case KMESH_L7_MATCH_SEPARATED_PREFIX:
		r = cap->present && n <= end && end <= cap->len && cap->prefix[n] == m->hash &&
		    (n == end || cap->bytes[bounded(n, KMESH_L7_MAX_STRING - 1)] == '/');
		break;
	case KMESH_L7_MATCH_SUFFIX:
		r = cap->present && !cap->truncated && n <= cap->len &&
		    substring_hash(cap, sc->pow, cap->len - n, cap->len) == m->hash;
		break;
	default:
		r = 0;
	}
	return m->invert ? !r : r;
}

static __always_inline __u32 *find_domain(struct kmesh_l7_domain_key *key)
{
	return bpf_map_lookup_elem(&kmesh_l7_domains, key);
}

/* Envoy's order: exact Host, longest "*suffix", longest "prefix*", "*". */
static __always_inline __u32 *find_vhost(const struct kmesh_l7_scratch *sc, const struct kmesh_l7_listener *l)
{
	const struct kmesh_l7_capture *host = &sc->slots[KMESH_L7_SLOT_HOST];
	struct kmesh_l7_domain_key key = { .listener_id = l->listener_id };
	__u32 *vhost = NULL, len = host->len, k;

	if (host->present && !host->truncated && len <= KMESH_L7_MAX_STRING) {
		len = bounded(len, KMESH_L7_MAX_STRING);
		key.kind = KMESH_L7_DOMAIN_EXACT;
		key.hash = host->prefix[len];
		vhost = find_domain(&key);
		if (vhost)
			return vhost;
		if (l->flags & KMESH_L7_HAS_SUFFIX_DOMAINS) {
			key.kind = KMESH_L7_DOMAIN_SUFFIX;
			/* longest first: the suffix starting right after the first byte */
			for (k = 1; k < KMESH_L7_MAX_STRING; k++) {
				if (k >= len)
					break;
				key.hash = substring_hash(host, sc->pow, k, len);
				vhost = find_domain(&key);
				if (vhost)
					break;
			}
			if (vhost)
				return vhost;
		}
		if (l->flags & KMESH_L7_HAS_PREFIX_DOMAINS) {
			key.kind = KMESH_L7_DOMAIN_PREFIX;
			for (k = KMESH_L7_MAX_STRING - 1; k > 0; k--) {
				if (k >= len)
					continue;
				key.hash = host->prefix[bounded(k, KMESH_L7_MAX_STRING)];
				vhost = find_domain(&key);
				if (vhost)
					return vhost;
			}
		}
	}
	if (!(l->flags & KMESH_L7_HAS_ANY_DOMAIN))
		return NULL;
	key.kind = KMESH_L7_DOMAIN_ANY;
	key.hash = 0;
	return find_domain(&key);
}

static __always_inline struct kmesh_l7_route *find_route(const struct kmesh_l7_scratch *sc, __u32 vhost_id)
{
	struct kmesh_l7_vhost *vh = bpf_map_lookup_elem(&kmesh_l7_vhosts, &vhost_id);
	struct kmesh_l7_route_key key = { .vhost_id = vhost_id };
	struct kmesh_l7_route *r;
	__u32 i, j, count;

	if (!vh)
		return NULL;
	count = vh->route_count;
	for (i = 0; i < KMESH_L7_MAX_ROUTES; i++) {
		if (i >= count)
			break;
		key.index = i;
		r = bpf_map_lookup_elem(&kmesh_l7_routes, &key);
		if (!r)
			return NULL;
		for (j = 0; j < KMESH_L7_MAX_ROUTE_HEADERS + 1; j++) {
			if (j >= r->matcher_count || !matches(sc, &r->matchers[j]))
				break;
		}
		if (j >= r->matcher_count)
			return r;
	}
	return NULL;
}

static __always_inline __u32 pick_weighted(const __u32 *ids, const __u32 *cum, __u32 count, __u32 total,
					   __u32 max)
{
	__u32 r, i;

	if (count <= 1 || total == 0)
		return ids[0];
	r = bpf_get_prandom_u32() % total;
	for (i = 0; i < max; i++) {
		if (i >= count)
			break;
		if (r < cum[i])
			return ids[i];
	}
	return ids[0];
}

static __always_inline __u32 lowest_bit_index(__u64 bit)
{
	__u32 n = 0;

	if (bit & 0xffffffff00000000ULL)
		n += 32;
	if (bit & 0xffff0000ffff0000ULL)
		n += 16;
	if (bit & 0xff00ff00ff00ff00ULL)
		n += 8;
	if (bit & 0xf0f0f0f0f0f0f0f0ULL)
		n += 4;
	if (bit & 0xccccccccccccccccULL)
		n += 2;
	if (bit & 0xaaaaaaaaaaaaaaaaULL)
		n += 1;
	return n;
}

/* Takes a ready socket of the pool; returns its slot tuple or NULL when the pool is empty. */
static __always_inline struct kmesh_l7_tuple *claim(__u32 pool_id)
{
	struct kmesh_l7_pool_taken *taken = bpf_map_lookup_elem(&kmesh_l7_pool_taken, &pool_id);
	__u64 *filled = bpf_map_lookup_elem(&kmesh_l7_pool_filled, &pool_id);
	__u64 ready, bit = 0;
	__u32 slot;

	if (!taken || !filled)
		return NULL;
	ready = *filled;
	bpf_spin_lock(&taken->lock);
	ready ^= taken->taken;
	if (ready) {
		bit = ready & -ready;
		taken->taken ^= bit;
	}
	bpf_spin_unlock(&taken->lock);
	if (!bit)
		return NULL;
	slot = pool_id * KMESH_L7_POOL_SLOTS + lowest_bit_index(bit);
	return bpf_map_lookup_elem(&kmesh_l7_pool_slots, &slot);
}

/* Endpoints whose pools are tried before the slow path. */
#define POOL_TRIES 4

/*
 * Is the endpoint at pos of the cluster ejected? The L4 sockops program ejects an endpoint
 * (kmesh_ep_state.ejected_until_ns) when its failures reach the cluster's threshold; the pick
 * compares with the clock, as the L4 pick does, so it comes back by itself.
 */
static __always_inline int ejected(__u32 cluster_id, const struct kmesh_l7_cluster *cl, __u32 pos, __u64 now)
{
	__u8 addr[16] = { [10] = 0xff, [11] = 0xff };
	struct kmesh_ep_state *st;

	pos &= KMESH_L7_MAX_CLUSTER_ENDPOINTS - 1;
	__builtin_memcpy(&addr[12], &cl->ep_ip4[pos], sizeof(__u32));
	st = ep_state_of(cluster_id, addr, cl->ep_port[pos]);
	return st && st->ejected_until_ns > now;
}

/*
 * From first on, the first position of the cluster's pools that is not ejected, within
 * KMESH_EJECT_PROBE_STEPS steps (the L4 pick's rule); all of them ejected: first, as Envoy's
 * panic mode would. A global function, so the verifier checks its loop once (scalar arguments:
 * 5.10).
 */
__attribute__((noinline)) __u32 kmesh_l7_skip_ejected(__u32 cluster_id, __u32 first, __u64 now)
{
	struct kmesh_l7_cluster *cl = bpf_map_lookup_elem(&kmesh_l7_clusters, &cluster_id);
	__u32 step, n, pos = first;

	if (!cl)
		return first;
	n = cl->endpoint_count;
	for (step = 0; step < KMESH_EJECT_PROBE_STEPS; step++) {
		if (step >= n)
			break;
		if (!ejected(cluster_id, cl, pos, now))
			return pos;
		pos = pos + 1 >= n ? 0 : pos + 1;
	}
	return first;
}

/*
 * Redirect msg to a pooled socket of the cluster: the endpoint chosen by weight first (moved
 * on past ejected ones), then the next ones that are not ejected, up to POOL_TRIES, that have a
 * ready socket; or only the endpoint at hash_pos (< endpoint_count) that the route's hash key
 * chose (the hash stage skipped ejected ones). Fills conn on success.
 */
static __always_inline int send_to_pool(struct sk_msg_md *msg, const struct kmesh_l7_tuple *client,
					struct kmesh_l7_conn *conn, __u32 hash_pos)
{
	struct kmesh_l7_cluster *cl = bpf_map_lookup_elem(&kmesh_l7_clusters, &conn->cluster_id);
	struct kmesh_l7_tuple *up;
	__u32 first, i, n, pos, tries = POOL_TRIES;
	__u64 now = bpf_ktime_get_ns();

	if (!cl || cl->endpoint_count == 0 || cl->endpoint_count > KMESH_L7_MAX_CLUSTER_ENDPOINTS)
		return -1;
	n = cl->endpoint_count;
	first = 0;
	if (hash_pos < n) {
		/* the key's endpoint or none: an empty pool goes to the slow path, to the same endpoint */
		first = hash_pos;
		tries = 1;
	} else if (n > 1 && cl->total_weight) {
		__u32 r = bpf_get_prandom_u32() % cl->total_weight;

		for (i = 0; i < KMESH_L7_MAX_CLUSTER_ENDPOINTS; i++) {
			if (i >= n || r < cl->cum_weights[i])
				break;
		}
		first = kmesh_l7_skip_ejected(conn->cluster_id, i < n ? i : 0, now);
		/* it reads the cluster again: an endpoint set swapped in between may be shorter */
		if (first >= n)
			first = 0;
	}
	conn->pool_id = cl->pool_ids[first & (KMESH_L7_MAX_CLUSTER_ENDPOINTS - 1)];
	for (i = 0; i < POOL_TRIES; i++) {
		__u32 pool;

		if (i >= n || i >= tries)
			break;
		pos = (first + i) % n;
		/* the first is the pick (ejected only when the walk found none other); the next ones are alternatives */
		if (i > 0 && ejected(conn->cluster_id, cl, pos, now))
			continue;
		pool = cl->pool_ids[pos & (KMESH_L7_MAX_CLUSTER_ENDPOINTS - 1)];
		up = claim(pool);
		/* a NULL redirect means the server closed that idle socket: the daemon replaces it */
		if (up && bpf_msg_redirect_hash(msg, &kmesh_l7_upstreams, up, 0) == SK_PASS) {
			conn->upstream = *up;
			conn->pool_id = pool;
			conn->state = KMESH_L7_CONN_SPLICED;
			bpf_map_update_elem(&kmesh_l7_peers, up, client, BPF_ANY);
			return 0;
		}
	}
	return -1;
}

static __always_inline void tuple_of_msg(struct sk_msg_md *msg, struct kmesh_l7_tuple *t)
{
	t->local_ip4 = msg->local_ip4;
	t->remote_ip4 = msg->remote_ip4;
	t->local_port = bpf_htons(msg->local_port);
	t->remote_port = msg->remote_port >> 16;
}

/* First request: choose route, cluster, endpoint and upstream socket. */
/* The first request is handled in stages, tail calls, each small enough for the verifier. */
enum {
	STAGE_PARSE0 = 0, /* .. STAGE_PARSE0 + 7 */
	STAGE_ROUTE = 8,
	STAGE_HASH,
	STAGE_POOL,
	STAGES,
};
_Static_assert(8 * 256 == KMESH_L7_MAX_PARSE, "one parse stage per 256 bytes of KMESH_L7_MAX_PARSE");
_Static_assert(sizeof(struct kmesh_l7_report) == KMESH_L7_REPORT_LEN, "one report, one parser message");

/* Filled by user space with the stage programs, by index (src/l7/layouts.ts L7_STAGES). */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, STAGES);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} kmesh_l7_stages SEC(".maps");

static __always_inline struct kmesh_l7_conn *conn_of(struct sk_msg_md *msg, struct kmesh_l7_tuple *client)
{
	tuple_of_msg(msg, client);
	return bpf_map_lookup_elem(&kmesh_l7_conns, client);
}

static __always_inline struct kmesh_l7_scratch *scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kmesh_l7_scratch, &zero);
}

/* A later request keeps the connection's upstream, whatever the stages conclude. */
static __always_inline int keep_upstream(struct sk_msg_md *msg)
{
	struct kmesh_l7_tuple client;
	struct kmesh_l7_conn *conn = conn_of(msg, &client);

	if (!conn)
		return SK_PASS;
	return bpf_msg_redirect_hash(msg, &kmesh_l7_upstreams, &conn->upstream, 0);
}

/* Starts like a request line ("GET ...")? Cheap enough for every send of a spliced connection. */
static __always_inline int starts_like_request(struct sk_msg_md *msg)
{
	__u8 *data = msg->data;

	if (data + 1 > (__u8 *)msg->data_end)
		return 0;
	return data[0] >= 'A' && data[0] <= 'Z';
}

SEC("sk_msg")
int kmesh_l7_msg(struct sk_msg_md *msg)
{
	struct kmesh_l7_tuple client;
	struct kmesh_l7_conn *conn = conn_of(msg, &client);
	struct kmesh_l7_listener *l;
	struct kmesh_l7_scratch *sc;
	__u32 want, later;

	if (!conn)
		return SK_PASS;
	later = conn->state == KMESH_L7_CONN_SPLICED;
	/* the route stays the first request's: a later one is only parsed to count a mismatch */
	if (later && !starts_like_request(msg))
		return bpf_msg_redirect_hash(msg, &kmesh_l7_upstreams, &conn->upstream, 0);
	/* slow path, draining (also the drain marker leaving this socket): to the anchor */
	if (!later && conn->state != KMESH_L7_CONN_NEW)
		return SK_PASS;
	sc = scratch();
	l = bpf_map_lookup_elem(&kmesh_l7_listeners, &conn->listener);
	if (!sc || !l)
		return later ? bpf_msg_redirect_hash(msg, &kmesh_l7_upstreams, &conn->upstream, 0) : SK_PASS;
	reset(sc, l->listener_id, later);
	/* the head must be in one linear buffer for the parser */
	want = msg->size < KMESH_L7_MAX_PARSE ? msg->size : KMESH_L7_MAX_PARSE;
	if ((__u8 *)msg->data + want > (__u8 *)msg->data_end)
		bpf_msg_pull_data(msg, 0, want, 0);
	bpf_tail_call(msg, &kmesh_l7_stages, STAGE_PARSE0);
	return later ? keep_upstream(msg) : SK_PASS;
}

/*
 * Stage 1: scan the request head into the scratch captures, PARSE_CHUNK bytes per
 * program, each chunk at a constant offset (the verifier then checks each byte access
 * cheaply and stays within its bound on pending branches), until the head ends or
 * KMESH_L7_MAX_PARSE bytes were seen.
 */
#define PARSE_CHUNK 256

static __always_inline int parse_chunk(struct sk_msg_md *msg, __u32 base, __u32 next_stage)
{
	struct kmesh_l7_scratch *sc = scratch();
	__u8 *data = msg->data, *data_end = msg->data_end;
	__u32 i;

	if (!sc)
		return SK_PASS;
	for (i = 0; i < PARSE_CHUNK; i++) {
		if (data + base + i + 1 > data_end)
			break;
		if (parse_byte(sc, data[base + i]))
			break;
	}
	if (!sc->done && i == PARSE_CHUNK && next_stage != STAGE_ROUTE) {
		bpf_tail_call(msg, &kmesh_l7_stages, next_stage);
		return sc->later ? keep_upstream(msg) : SK_PASS;
	}
	if (!sc->done && !sc->later && msg->size < KMESH_L7_MAX_PARSE) {
		/* the head continues in a later send: hold these bytes until more arrive */
		bpf_msg_cork_bytes(msg, msg->size + 1);
		return SK_PASS;
	}
	bpf_tail_call(msg, &kmesh_l7_stages, STAGE_ROUTE);
	return sc->later ? keep_upstream(msg) : SK_PASS;
}

#define PARSE_STAGE(k, next)                                      \
	SEC("sk_msg")                                             \
	int kmesh_l7_parse##k(struct sk_msg_md *msg)              \
	{                                                         \
		return parse_chunk(msg, (k) * PARSE_CHUNK, next); \
	}

PARSE_STAGE(0, STAGE_PARSE0 + 1)
PARSE_STAGE(1, STAGE_PARSE0 + 2)
PARSE_STAGE(2, STAGE_PARSE0 + 3)
PARSE_STAGE(3, STAGE_PARSE0 + 4)
PARSE_STAGE(4, STAGE_PARSE0 + 5)
PARSE_STAGE(5, STAGE_PARSE0 + 6)
PARSE_STAGE(6, STAGE_PARSE0 + 7)
PARSE_STAGE(7, STAGE_ROUTE)

/* Stage 2: virtual host, route, cluster. */
SEC("sk_msg")
int kmesh_l7_route(struct sk_msg_md *msg)
{
	struct kmesh_l7_tuple client;
	struct kmesh_l7_conn *conn = conn_of(msg, &client);
	struct kmesh_l7_scratch *sc = scratch();
	const struct kmesh_l7_split *split;
	struct kmesh_l7_route *route = NULL;
	struct kmesh_l7_listener *l;
	__u32 *vhost;

	if (!conn || !sc)
		return SK_PASS;
	l = bpf_map_lookup_elem(&kmesh_l7_listeners, &conn->listener);
	/* a later request is only compared, and only a whole head */
	if (!l || (sc->later && sc->done != 1))
		return sc->later ? bpf_msg_redirect_hash(msg, &kmesh_l7_upstreams, &conn->upstream, 0) : SK_PASS;
	if (sc->done != 2) {
		vhost = find_vhost(sc, l);
		if (vhost)
			route = find_route(sc, *vhost);
	}
	if (sc->later) {
		if ((route ? route->route_id : NO_ROUTE) != conn->route_id)
			count(KMESH_L7_CNT_LATER_MISMATCH);
		return bpf_msg_redirect_hash(msg, &kmesh_l7_upstreams, &conn->upstream, 0);
	}
	if (sc->done == 2) {
		count(KMESH_L7_CNT_NOT_HTTP);
	} else {
		/* a head longer than the parse limit is routed on the headers seen */
		if (sc->done == 0)
			count(KMESH_L7_CNT_TRUNCATED);
		count(route ? KMESH_L7_CNT_ROUTED : KMESH_L7_CNT_NO_ROUTE);
	}
	split = route ? &route->action : &l->fallback;
	conn->route_id = route ? route->route_id : NO_ROUTE;
	if (split->cluster_count == 0) {
		count(KMESH_L7_CNT_NO_ENDPOINT);
		return SK_DROP;
	}
	conn->cluster_id = pick_weighted(split->cluster_ids, split->cum_weights, split->cluster_count,
					 split->total_weight, KMESH_L7_MAX_ROUTE_CLUSTERS);
	count_route(conn->route_id, conn->cluster_id);
	sc->hash_pos = KMESH_L7_NO_POS;
	sc->hash_kind = route ? route->hash_kind : KMESH_L7_HASH_NONE;
	if (sc->hash_kind != KMESH_L7_HASH_NONE) {
		sc->hash_slot = route->hash_slot;
		sc->cookie_len = route->cookie_len;
		sc->cookie_hash = route->cookie_hash;
		bpf_tail_call(msg, &kmesh_l7_stages, STAGE_HASH);
	}
	bpf_tail_call(msg, &kmesh_l7_stages, STAGE_POOL);
	return SK_PASS;
}

/*
 * The value of the cookie the route names inside the captured Cookie header
 * ("a=1; name=value; b=2"): 1 and its hash in *key, or 0 when absent, empty, or not
 * wholly within the captured bytes.
 */
static __always_inline int cookie_key(struct kmesh_l7_scratch *sc, const struct kmesh_l7_capture *cap, __u64 *key)
{
	__u32 len = cap->len, i, start, eq;
	__u8 c;

	sc->ck_start = 0;
	sc->ck_eq = KMESH_L7_NO_POS;
	sc->ck_skip = 1;
	for (i = 0; i <= KMESH_L7_MAX_STRING; i++) {
		if (i > len)
			break;
		/* the end of the captured bytes ends the last pair */
		c = i < len ? cap->bytes[bounded(i, KMESH_L7_MAX_STRING - 1)] : ';';
		if (sc->ck_skip) {
			if (c == ' ') {
				sc->ck_start = i + 1;
				continue;
			}
			sc->ck_skip = 0;
		}
		if (c == '=' && sc->ck_eq == KMESH_L7_NO_POS) {
			sc->ck_eq = i;
			continue;
		}
		if (c != ';')
			continue;
		start = sc->ck_start;
		eq = sc->ck_eq;
		if (eq != KMESH_L7_NO_POS && eq >= start && eq - start == sc->cookie_len &&
		    substring_hash(cap, sc->pow, start, eq) == sc->cookie_hash) {
			if ((i == len && cap->truncated) || i == eq + 1)
				return 0;
			*key = substring_hash(cap, sc->pow, eq + 1, i);
			return 1;
		}
		sc->ck_start = i + 1;
		sc->ck_eq = KMESH_L7_NO_POS;
		sc->ck_skip = 1;
	}
	return 0;
}

/* The route's hash key from the request: 1 and *key when the request has it. */
static __always_inline int hash_key(struct kmesh_l7_scratch *sc, __u64 *key)
{
	const struct kmesh_l7_capture *cap;
	__u32 slot = sc->hash_slot;

	if (slot >= KMESH_L7_SLOTS)
		return 0;
	cap = &sc->slots[slot];
	if (!cap->present)
		return 0;
	if (sc->hash_kind == KMESH_L7_HASH_COOKIE)
		return cookie_key(sc, cap, key);
	/* a value longer than the capture is hashed on its first KMESH_L7_HASH_VALUE_MAX bytes */
	*key = cap->prefix[bounded(cap->len, KMESH_L7_MAX_STRING)];
	return 1;
}

/*
 * The pool position of the endpoint at L4 index `index` of the live endpoint set (n endpoints),
 * moved on past ejected endpoints to the next L4 index as the L4 maglev pick does (wrapping
 * over the cluster's endpoints, up to KMESH_EJECT_PROBE_STEPS); all of them ejected: index's
 * own (panic). Global, as kmesh_l7_skip_ejected.
 */
__attribute__((noinline)) __u32 kmesh_l7_hashed_pos(__u32 cluster_id, __u32 index, __u32 n)
{
	struct kmesh_l7_cluster *cl = bpf_map_lookup_elem(&kmesh_l7_clusters, &cluster_id);
	__u32 step, pos, first = KMESH_L7_NO_POS;
	__u64 now = bpf_ktime_get_ns();

	if (!cl)
		return first;
	for (step = 0; step < KMESH_EJECT_PROBE_STEPS; step++) {
		if (index >= n || index >= KMESH_L7_MAX_CLUSTER_ENDPOINTS)
			break;
		pos = cl->table_pos[bounded(index, KMESH_L7_MAX_CLUSTER_ENDPOINTS - 1)];
		if (step == 0)
			first = pos;
		if (pos < KMESH_L7_MAX_CLUSTER_ENDPOINTS && !ejected(cluster_id, cl, pos, now))
			return pos;
		index = index + 1 >= n ? 0 : index + 1;
	}
	return first;
}

/*
 * Stage 3 (routes with a hash policy): when the chosen cluster is maglev / ring_hash, the
 * key's slot in its kmesh_lb_table (the table the L4 path reads) picks the endpoint, or
 * the next one that is not ejected. Without the key, the weighted pick of the pool stage.
 */
SEC("sk_msg")
int kmesh_l7_hash(struct sk_msg_md *msg)
{
	struct kmesh_l7_tuple client;
	struct kmesh_l7_conn *conn = conn_of(msg, &client);
	struct kmesh_l7_scratch *sc = scratch();
	struct kmesh_cluster_value *cv;
	struct kmesh_l7_cluster *cl;
	__u32 index;
	__u64 key;

	if (!conn || !sc)
		return SK_PASS;
	cv = lookup_cluster(conn->cluster_id, active_slot());
	cl = bpf_map_lookup_elem(&kmesh_l7_clusters, &conn->cluster_id);
	if (cv && cl && (cv->lb_policy == KMESH_LB_MAGLEV || cv->lb_policy == KMESH_LB_RING_HASH)) {
		if (hash_key(sc, &key)) {
			index = lb_table_index(conn->cluster_id, cv, (__u32)mix64(key), KMESH_L7_NO_POS);
			sc->hash_pos = kmesh_l7_hashed_pos(conn->cluster_id, index, cv->endpoint_count);
			count(KMESH_L7_CNT_HASHED);
		} else {
			count(KMESH_L7_CNT_HASH_KEY_ABSENT);
		}
	}
	bpf_tail_call(msg, &kmesh_l7_stages, STAGE_POOL);
	return SK_PASS;
}

/*
 * Circuit breaker max_requests (HTTP/1.1: one request in flight per routed connection, so
 * the cluster's routed connections open now): 0 when the connection may go on (counted in
 * kmesh_l7_requests until the client closes, kmesh_l7_sockops), -1 over the limit.
 * Concurrent first requests on other CPUs can overshoot by the number racing (as
 * max_connections at L4).
 */
static __always_inline int take_request(__u32 cluster_id, __u32 max, const struct kmesh_l7_tuple *client)
{
	__s64 zero = 0, *open;

	if (!max)
		return 0;
	open = bpf_map_lookup_elem(&kmesh_l7_requests, &cluster_id);
	if (!open) {
		bpf_map_update_elem(&kmesh_l7_requests, &cluster_id, &zero, BPF_NOEXIST);
		open = bpf_map_lookup_elem(&kmesh_l7_requests, &cluster_id);
		if (!open)
			return 0;
	}
	if (*open >= max)
		return -1;
	__sync_fetch_and_add(open, 1);
	/* no entry (table full): not counted, so never uncounted either */
	if (bpf_map_update_elem(&kmesh_l7_inflight, client, &cluster_id, BPF_NOEXIST))
		__sync_fetch_and_add(open, -1);
	return 0;
}

/* An overflow in the cluster's circuit-breaker counter (the one max_connections uses at L4). */
static __always_inline void count_overflow(__u32 cluster_id)
{
	struct kmesh_cluster_state *cs = bpf_map_lookup_elem(&kmesh_cl_state, &cluster_id);

	if (cs)
		__sync_fetch_and_add(&cs->overflows, 1);
}

/* Stage 4: endpoint and a pre-connected socket to it, or the daemon's slow path. */
SEC("sk_msg")
int kmesh_l7_pool(struct sk_msg_md *msg)
{
	struct kmesh_l7_tuple client;
	struct kmesh_l7_conn *conn = conn_of(msg, &client);
	struct kmesh_l7_scratch *sc = scratch();
	struct kmesh_l7_cluster *cl;

	if (!conn || !sc)
		return SK_PASS;
	cl = bpf_map_lookup_elem(&kmesh_l7_clusters, &conn->cluster_id);
	if (!cl) {
		count(KMESH_L7_CNT_NO_ENDPOINT);
		return SK_DROP;
	}
	/* the bytes go to the anchor, which answers 503 (x-envoy-overloaded) and closes */
	if (take_request(conn->cluster_id, cl->max_requests, &client)) {
		conn->state = KMESH_L7_CONN_OVERFLOW;
		count(KMESH_L7_CNT_OVERFLOW);
		count_overflow(conn->cluster_id);
		return SK_PASS;
	}
	if (send_to_pool(msg, &client, conn, sc->hash_pos) == 0) {
		count(KMESH_L7_CNT_POOL_HIT);
		return SK_PASS;
	}
	/* the daemon reads conn->pool_id, connects and splices */
	conn->state = KMESH_L7_CONN_SLOW;
	count(KMESH_L7_CNT_SLOW_PATH);
	return SK_PASS;
}

static __always_inline void sockops_tuple(struct bpf_sock_ops *skops, struct kmesh_l7_tuple *t)
{
	t->local_ip4 = skops->local_ip4;
	t->remote_ip4 = skops->remote_ip4;
	t->local_port = bpf_htons(skops->local_port);
	t->remote_port = skops->remote_port >> 16;
}

/* A client counted by max_requests closed: its request slot is free (the delete wins once). */
static __always_inline void client_closed(struct bpf_sock_ops *skops)
{
	struct kmesh_l7_tuple t;
	__u32 *cluster_id;
	__s64 *open;
	__u32 id;

	sockops_tuple(skops, &t);
	cluster_id = bpf_map_lookup_elem(&kmesh_l7_inflight, &t);
	if (!cluster_id)
		return;
	id = *cluster_id;
	if (bpf_map_delete_elem(&kmesh_l7_inflight, &t))
		return;
	open = bpf_map_lookup_elem(&kmesh_l7_requests, &id);
	if (open)
		__sync_fetch_and_add(open, -1);
}

SEC("sockops")
int kmesh_l7_sockops(struct bpf_sock_ops *skops)
{
	struct kmesh_l7_conn conn = {};
	struct kmesh_l7_tuple t;
	struct kmesh_l7_sock *mark;
	struct bpf_sock *sk;

	if (skops->family != AF_INET)
		return 1;
	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == BPF_TCP_CLOSE)
			client_closed(skops);
		return 1;
	}
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	mark = bpf_sk_storage_get(&kmesh_l7_sock, sk, 0, 0);
	if (!mark)
		return 1;
	sockops_tuple(skops, &t);
	/* the close callback uncounts a request of max_requests; other programs' flags are kept */
	if (!(skops->bpf_sock_ops_cb_flags & BPF_SOCK_OPS_STATE_CB_FLAG))
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	conn.listener = mark->listener;
	conn.route_id = NO_ROUTE;
	if (bpf_map_update_elem(&kmesh_l7_conns, &t, &conn, BPF_ANY))
		return 1;
	/* without the hash entry the bytes reach the anchor: the daemon routes them (slow path) */
	if (bpf_sock_hash_update(skops, &kmesh_l7_clients, &t, BPF_ANY)) {
		struct kmesh_l7_conn *c = bpf_map_lookup_elem(&kmesh_l7_conns, &t);

		if (c)
			c->state = KMESH_L7_CONN_SLOW;
		return 1;
	}
	count(KMESH_L7_CNT_CONNECTIONS);
	return 1;
}

/* Strparser needs a message length: every received chunk is one message. */
SEC("sk_skb/stream_parser")
int kmesh_l7_upstream_parser(struct __sk_buff *skb)
{
	return skb->len;
}

/* The endpoint's outlier state, made on first sight: a cluster only L7 uses has had no L4 pick. */
static __always_inline struct kmesh_ep_state *upstream_state(__u32 cluster_id, __u32 ip4, __u16 port)
{
	struct kmesh_ep_state_key key = { .addr = { [10] = 0xff, [11] = 0xff }, .port = port, .cluster_id = cluster_id };
	struct kmesh_ep_state init = {};
	struct kmesh_ep_state *st;

	__builtin_memcpy(&key.addr[12], &ip4, sizeof(ip4));
	st = bpf_map_lookup_elem(&kmesh_ep_state, &key);
	if (st)
		return st;
	bpf_map_update_elem(&kmesh_ep_state, &key, &init, BPF_NOEXIST);
	return bpf_map_lookup_elem(&kmesh_ep_state, &key);
}

/*
 * Outlier detection from responses (Envoy's consecutive_5xx; the same counter connect
 * failures feed): the first bytes the upstream sends after its socket was handed to a client
 * start the first response, "HTTP/1.x NNN". A 5xx status counts as a failure of the
 * endpoint, 2xx-4xx as a success (it resets the count); a 1xx or anything else counts as
 * nothing. Later responses on the connection are not looked at: where they start depends on
 * the framing of the ones before.
 */
static __always_inline void count_response(struct __sk_buff *skb, const struct kmesh_l7_tuple *client)
{
	struct kmesh_l7_conn *conn = bpf_map_lookup_elem(&kmesh_l7_conns, client);
	struct kmesh_ep_state *st;
	__u8 line[12];

	if (!conn || conn->responded)
		return;
	/* one verdict at a time per upstream socket, and this socket serves this client alone */
	conn->responded = 1;
	if (!bpf_map_lookup_elem(&kmesh_cl_policy, &conn->cluster_id))
		return;
	if (bpf_skb_load_bytes(skb, 0, line, sizeof(line)))
		return;
	if (line[0] != 'H' || line[1] != 'T' || line[2] != 'T' || line[3] != 'P' || line[4] != '/' || line[5] != '1' ||
	    line[6] != '.' || line[8] != ' ' || line[9] < '2' || line[9] > '5')
		return;
	st = upstream_state(conn->cluster_id, skb->remote_ip4, bpf_ntohs(skb->remote_port >> 16));
	if (!st)
		return;
	if (line[9] == '5')
		record_failure(conn->cluster_id, st, 0);
	else
		record_success(conn->cluster_id, st);
}

SEC("sk_skb/stream_verdict")
int kmesh_l7_upstream_verdict(struct __sk_buff *skb)
{
	struct kmesh_l7_tuple up = {
		.local_ip4 = skb->local_ip4,
		.remote_ip4 = skb->remote_ip4,
		.local_port = bpf_htons(skb->local_port),
		.remote_port = skb->remote_port >> 16,
	};
	struct kmesh_l7_tuple *client = bpf_map_lookup_elem(&kmesh_l7_peers, &up);

	if (!client)
		return SK_PASS;
	count_response(skb, client);
	return bpf_sk_redirect_hash(skb, &kmesh_l7_clients, client, BPF_F_INGRESS);
}

/* Markers are fixed-size messages: one verdict per marker, whatever the segments. */
SEC("sk_skb/stream_parser")
int kmesh_l7_marker_parser(struct __sk_buff *skb)
{
	return KMESH_L7_MARKER_LEN;
}

/* A marker goes out of the next waiting client's socket, behind what its backlog holds. */
SEC("sk_skb/stream_verdict")
int kmesh_l7_marker_verdict(struct __sk_buff *skb)
{
	__u32 zero = 0, slot;
	__u64 *head = bpf_map_lookup_elem(&kmesh_l7_marker_head, &zero);
	struct kmesh_l7_tuple *client;

	if (!head)
		return SK_DROP;
	/* one marker socket, messages verdicted in order: head is ours alone */
	slot = (__u32)(*head % KMESH_L7_MARKER_RING);
	*head += 1;
	client = bpf_map_lookup_elem(&kmesh_l7_marker_ring, &slot);
	if (!client)
		return SK_DROP;
	return bpf_sk_redirect_hash(skb, &kmesh_l7_clients, client, 0);
}

/* Reports are fixed-size records: one verdict per report, whatever the segments. */
SEC("sk_skb/stream_parser")
int kmesh_l7_report_parser(struct __sk_buff *skb)
{
	return KMESH_L7_REPORT_LEN;
}

/*
 * A report from the daemon (struct kmesh_l7_report): a connect of its pool or slow path that
 * failed counts toward the endpoint's outlier detection in the cluster, by kmesh_outlier.h's
 * rule, as a failed connect of an application does at L4; an overflow of max_pending_requests
 * counts in the cluster's overflows. Consumed here (dropped).
 */
SEC("sk_skb/stream_verdict")
int kmesh_l7_report_verdict(struct __sk_buff *skb)
{
	struct kmesh_l7_report r;
	struct kmesh_ep_state *st;

	if (bpf_skb_load_bytes(skb, 0, &r, sizeof(r)))
		return SK_DROP;
	if (r.kind == KMESH_L7_REPORT_OVERFLOW) {
		count_overflow(r.cluster_id);
		return SK_DROP;
	}
	if (!bpf_map_lookup_elem(&kmesh_cl_policy, &r.cluster_id))
		return SK_DROP;
	st = upstream_state(r.cluster_id, r.ip4, r.port);
	if (st)
		record_failure(r.cluster_id, st, r.kind == KMESH_L7_REPORT_CONNECT_TIMEOUT);
	return SK_DROP;
}
