// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kmesh-orchestration, L4: steer a registered cgroup's connect()/sendmsg() to a
 * listener address onto an endpoint of the chosen cluster, and make the socket
 * keep reporting the address the application dialled (getpeername, recvmsg).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "kmesh_maps.h"
#include "kmesh_sock_origin_map.h"
#include "kmesh_l7_handoff.h"
#include "kmesh_lb_maps.h"
#include "kmesh_resilience.h"
#include "kmesh_outlier.h"

#define SOCK_ADDR_ALLOW 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_LISTENERS * KMESH_CONFIG_SLOTS);
	__type(key, struct kmesh_listener_key);
	__type(value, struct kmesh_listener_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_ENDPOINTS);
	__type(key, struct kmesh_endpoint_key);
	__type(value, struct kmesh_endpoint_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, __u32);
	__type(value, struct kmesh_rr_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_rr SEC(".maps");

/*
 * The sockops callbacks of a connect() (TIMEOUT_INIT, TCP_CONNECT) run in the same system call right
 * after connect4, on the same CPU unless the task migrated in between: this per-CPU note of the last
 * steered TCP connect gives them the connection's flags without a hash lookup (a cookie that does not
 * match means: look it up).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kmesh_conn_hint);
} kmesh_conn_hint SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KMESH_MAX_TRACKED_SOCKETS);
	__type(key, struct kmesh_udp_reverse_key);
	__type(value, struct kmesh_udp_reverse_value);
} kmesh_udp_reverse SEC(".maps");

static __always_inline int addr_is_v4mapped(const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	return w[0] == 0 && w[1] == 0 && w[2] == bpf_htonl(0xffff);
}

static __always_inline void addr_set_v4(__u8 *a, __u32 ip4)
{
	__u32 *w = (__u32 *)a;

	w[0] = 0;
	w[1] = 0;
	w[2] = bpf_htonl(0xffff);
	w[3] = ip4;
}

static __always_inline void read_user_ip6(const struct bpf_sock_addr *ctx, __u8 *a)
{
	__u32 *w = (__u32 *)a;

	w[0] = ctx->user_ip6[0];
	w[1] = ctx->user_ip6[1];
	w[2] = ctx->user_ip6[2];
	w[3] = ctx->user_ip6[3];
}

/* The context takes 4-byte stores only: write the address word by word. */
static __always_inline void write_user_ip6(struct bpf_sock_addr *ctx, const __u8 *a)
{
	const __u32 *w = (const __u32 *)a;

	ctx->user_ip6[0] = w[0];
	ctx->user_ip6[1] = w[1];
	ctx->user_ip6[2] = w[2];
	ctx->user_ip6[3] = w[3];
}

static __always_inline __u32 pick_cluster(const struct kmesh_listener_value *lv)
{
	__u32 r;
	int i;

	if (lv->cluster_count <= 1 || lv->total_weight == 0)
		return lv->cluster_ids[0];
	r = bpf_get_prandom_u32() % lv->total_weight;
#pragma unroll
	for (i = 0; i < KMESH_MAX_ROUTE_CLUSTERS; i++) {
		if (i >= lv->cluster_count)
			break;
		if (r < lv->cum_weights[i])
			return lv->cluster_ids[i];
	}
	return lv->cluster_ids[0];
}

static __always_inline __u32 next_round_robin(__u32 cluster_id, __u32 modulo)
{
	struct kmesh_rr_value *rr = bpf_map_lookup_elem(&kmesh_rr, &cluster_id);
	__u32 n;

	if (!rr)
		return 0;
	bpf_spin_lock(&rr->lock);
	n = rr->next;
	rr->next = n + 1 >= modulo ? 0 : n + 1;
	bpf_spin_unlock(&rr->lock);
	return n < modulo ? n : 0;
}

/* The first endpoint of [lo, hi] whose cumulative weight exceeds the ticket. */
static __always_inline struct kmesh_endpoint_value *
find_weighted(__u32 cluster_id, __u32 generation, __u32 lo, __u32 hi, __u32 ticket, __u32 *index)
{
	struct kmesh_endpoint_key key = { .cluster_id = cluster_id, .generation = generation };
	struct kmesh_endpoint_value *ep;
	int step;

	for (step = 0; step < KMESH_ENDPOINT_SEARCH_STEPS && lo < hi; step++) {
		key.index = lo + (hi - lo) / 2;
		ep = bpf_map_lookup_elem(&kmesh_endpoints, &key);
		if (!ep)
			return NULL;
		if (ticket < ep->cum_weight)
			hi = key.index;
		else
			lo = key.index + 1;
	}
	key.index = lo;
	*index = lo;
	return bpf_map_lookup_elem(&kmesh_endpoints, &key);
}

/* ---- resilience: see the KMESH_CLUSTER_RESILIENT part of kmesh_maps.h; policy and state maps in kmesh_outlier.h ---- */

/* Double-buffered with the endpoint sets, like kmesh_endpoints. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, struct kmesh_gen_key);
	__type(value, struct kmesh_levels);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_levels SEC(".maps");

/* Where a connect over max_connections goes: nothing listens on port 0, so the
 * application's connect() fails with ECONNREFUSED right away (a cgroup/connect verdict
 * could only give EPERM). Port 0 also tells sockops it is no endpoint. */
static const struct kmesh_endpoint_value kmesh_overflow_endpoint = {
	.addr = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1 },
};

/* The endpoint's state, made on first sight with its level (ejections count per level). */
static __always_inline struct kmesh_ep_state *ep_state_at_pick(__u32 cluster_id, const struct kmesh_endpoint_value *ep)
{
	struct kmesh_ep_state_key key = { .port = ep->port, .cluster_id = cluster_id };
	struct kmesh_ep_state init = { .level = ep->level };
	struct kmesh_ep_state *st;

	__builtin_memcpy(key.addr, ep->addr, sizeof(key.addr));
	st = bpf_map_lookup_elem(&kmesh_ep_state, &key);
	if (!st) {
		bpf_map_update_elem(&kmesh_ep_state, &key, &init, BPF_NOEXIST);
		return bpf_map_lookup_elem(&kmesh_ep_state, &key);
	}
	/* a new endpoint set may have moved it to another level */
	if (st->level != ep->level)
		st->level = ep->level;
	return st;
}

/* Ejected endpoints per level, 8 bits each (at most KMESH_MAX_EJECTED of them). */
static __always_inline __u64 ejected_per_level(const struct kmesh_cluster_state *cs, __u64 now)
{
	__u64 counts = 0;
	int i;

	if (!cs)
		return 0;
	for (i = 0; i < KMESH_MAX_EJECTED; i++) {
		if (cs->ejected[i].until_ns > now && cs->ejected[i].level < KMESH_MAX_PRIORITIES)
			counts += 1ULL << (cs->ejected[i].level * 8);
	}
	return counts;
}

/* Envoy's priority load: a level takes overprovisioning (1.4 by default) × its healthy share
 * (capped at 100 %) of what the levels before it left; below 100 % in total the shares are scaled up. */
static __always_inline __u32 level_share(const struct kmesh_level *l, __u32 ejected, __u32 used, __u32 pct)
{
	__u32 healthy = l->count > ejected ? l->count - ejected : 0;
	__u32 share = l->count ? healthy * pct / l->count : 0;

	if (share > 100)
		share = 100;
	return share < 100 - used ? share : 100 - used;
}

static __always_inline __u32 pick_level(const struct kmesh_levels *lv, const struct kmesh_cluster_state *cs,
					__u64 now)
{
	__u64 ejected = ejected_per_level(cs, now);
	__u32 pct = lv->overprovisioning_pct ? lv->overprovisioning_pct : KMESH_OVERPROVISIONING_PCT;
	__u32 total = 0, acc = 0, share, r;
	int i;

	for (i = 0; i < KMESH_MAX_PRIORITIES; i++) {
		if (i >= lv->level_count)
			break;
		total += level_share(&lv->level[i], (ejected >> (i * 8)) & 0xff, total, pct);
	}
	/* every level fully ejected: Envoy's panic, the first level takes it all */
	if (total == 0)
		return 0;
	r = bpf_get_prandom_u32() % total;
	for (i = 0; i < KMESH_MAX_PRIORITIES; i++) {
		if (i >= lv->level_count)
			break;
		share = level_share(&lv->level[i], (ejected >> (i * 8)) & 0xff, acc, pct);
		if (r < acc + share)
			return i;
		acc += share;
	}
	return 0;
}

#define PICK_UNIFORM 0x1
#define PICK_SKIP_EJECTED 0x2
#define NO_INDEX 0xffffffff

/*
 * The endpoint index a ticket names within a level (ticket below the level's count if PICK_UNIFORM, else
 * below its weight), moved on past endpoints that are ejected (decided here, in the kernel: sockops set
 * ejected_until_ns when the failures reached the threshold). All of them ejected: the first pick, as
 * Envoy's panic mode would.
 * A global function, so the verifier checks it once rather than at every call site; 5.10 takes only
 * scalar arguments there, hence the pairs packed into 64 bits.
 */
__attribute__((noinline)) __u32 kmesh_pick_in_level(__u64 cluster_generation, __u64 start_count,
						     __u64 base_ticket, __u64 now, __u32 flags)
{
	struct kmesh_endpoint_key key = { .cluster_id = cluster_generation >> 32,
					  .generation = (__u32)cluster_generation };
	__u32 start = start_count >> 32, end = start + (__u32)start_count, first;
	struct kmesh_endpoint_value *ep;
	struct kmesh_ep_state *st;
	int step;

	if (end <= start)
		return NO_INDEX;
	if (flags & PICK_UNIFORM)
		key.index = start + (__u32)base_ticket;
	else
		find_weighted(key.cluster_id, key.generation, start, end - 1,
			      (__u32)(base_ticket >> 32) + (__u32)base_ticket, &key.index);
	first = key.index;
	if (!(flags & PICK_SKIP_EJECTED))
		return first;
	for (step = 0; step < KMESH_EJECT_PROBE_STEPS; step++) {
		ep = bpf_map_lookup_elem(&kmesh_endpoints, &key);
		if (!ep)
			return first;
		st = ep_state_at_pick(key.cluster_id, ep);
		if (!st || st->ejected_until_ns <= now)
			return key.index;
		key.index = key.index + 1 >= end ? start : key.index + 1;
	}
	return first;
}

/* The consistent-hash key at connect time: the calling workload and/or the socket's
 * bound source address (zero while unbound). */
static __always_inline __u32 hash_of(struct bpf_sock_addr *ctx, const struct kmesh_cluster_policy *pol)
{
	struct bpf_sock *sk = ctx->sk;
	__u64 h = 0x9E3779B97F4A7C15ULL;

	if (pol->hash_key & KMESH_HASH_CGROUP)
		h = mix64(h ^ bpf_get_current_cgroup_id());
	if ((pol->hash_key & KMESH_HASH_SOURCE) && sk) {
		h = mix64(h ^ sk->src_ip4);
		h = mix64(h ^ ((__u64)sk->src_ip6[0] << 32 | sk->src_ip6[1]));
		h = mix64(h ^ ((__u64)sk->src_ip6[2] << 32 | sk->src_ip6[3]));
	}
	return (__u32)h;
}

/* Maglev / ring hash: the level-0 endpoint index the key's table slot names, or NO_INDEX. */
static __always_inline __u32 hashed_index(struct bpf_sock_addr *ctx, __u32 cluster_id,
					  const struct kmesh_cluster_value *cv, const struct kmesh_cluster_policy *pol)
{
	return lb_table_index(cluster_id, cv, hash_of(ctx, pol), NO_INDEX);
}

static __always_inline struct kmesh_endpoint_value *endpoint_at(__u32 cluster_id, __u32 generation, __u32 index)
{
	struct kmesh_endpoint_key key = { .cluster_id = cluster_id, .generation = generation, .index = index };

	return bpf_map_lookup_elem(&kmesh_endpoints, &key);
}

/* Connections of an endpoint, as load: (active + 1) x the other's weight (Envoy's weighted least
 * request with bias 1 compares (active + 1) / weight). */
static __always_inline __u64 load_of(__u32 cluster_id, const struct kmesh_cluster_value *cv,
				     const struct kmesh_level *l, __u32 index, __u32 other)
{
	struct kmesh_endpoint_value *ep = endpoint_at(cluster_id, cv->generation, index);
	struct kmesh_endpoint_value *o, *prev;
	struct kmesh_ep_state *st;
	__u64 weight = 1;
	__s64 active;

	if (!ep)
		return ~0ULL;
	st = ep_state_of(cluster_id, ep->addr, ep->port);
	active = st ? st->active : 0;
	if (!(cv->flags & KMESH_CLUSTER_UNIFORM_WEIGHTS)) {
		o = endpoint_at(cluster_id, cv->generation, other);
		prev = other > l->start ? endpoint_at(cluster_id, cv->generation, other - 1) : NULL;
		if (o)
			weight = o->cum_weight - (prev ? prev->cum_weight : l->cum_base);
	}
	return (__u64)(active > 0 ? active + 1 : 1) * weight;
}

/* The endpoint choice of a KMESH_CLUSTER_RESILIENT cluster. */
static __always_inline struct kmesh_endpoint_value *pick_resilient(struct bpf_sock_addr *ctx, __u32 cluster_id,
								   const struct kmesh_cluster_value *cv,
								   const struct kmesh_cluster_policy *pol)
{
	struct kmesh_gen_key gk = { .cluster_id = cluster_id, .generation = cv->generation };
	struct kmesh_cluster_state *cs = bpf_map_lookup_elem(&kmesh_cl_state, &cluster_id);
	struct kmesh_levels *lv = bpf_map_lookup_elem(&kmesh_levels, &gk);
	struct kmesh_level l = { .count = cv->endpoint_count, .weight = cv->total_weight };
	__u32 flags = (cv->flags & KMESH_CLUSTER_UNIFORM_WEIGHTS ? PICK_UNIFORM : 0) |
		      (pol->consecutive_failures ? PICK_SKIP_EJECTED : 0);
	__u64 now = bpf_ktime_get_ns(), cg, span;
	__u32 li = 0, range, ticket, index, other;

	if (pol->max_connections && cs && cs->active >= (__s64)pol->max_connections) {
		__sync_fetch_and_add(&cs->overflows, 1);
		return (struct kmesh_endpoint_value *)&kmesh_overflow_endpoint;
	}
	if (lv) {
		if (lv->level_count > 1)
			li = pick_level(lv, cs, now);
		if (li < KMESH_MAX_PRIORITIES)
			__builtin_memcpy(&l, &lv->level[li], sizeof(l));
	}
	range = cv->flags & KMESH_CLUSTER_UNIFORM_WEIGHTS ? l.count : l.weight;
	if (range == 0)
		return NULL;

	cg = (__u64)cluster_id << 32 | cv->generation;
	span = (__u64)l.start << 32 | l.count;
	switch (cv->lb_policy) {
	case KMESH_LB_MAGLEV:
	case KMESH_LB_RING_HASH:
		/* the table covers the first level; a failover level is picked by weight */
		index = li == 0 ? hashed_index(ctx, cluster_id, cv, pol) : NO_INDEX;
		if (index >= l.start && index < l.start + l.count) {
			flags |= PICK_UNIFORM;
			ticket = index - l.start;
		} else {
			ticket = bpf_get_prandom_u32() % range;
		}
		break;
	case KMESH_LB_ROUND_ROBIN:
		ticket = next_round_robin(cluster_id, range);
		break;
	default:
		ticket = bpf_get_prandom_u32() % range;
		break;
	}
	index = kmesh_pick_in_level(cg, span, (__u64)l.cum_base << 32 | ticket, now, flags);
	/* power of two choices: the less loaded of two random picks (a level of one endpoint, or the same
	 * endpoint twice, leaves nothing to compare) */
	if (cv->lb_policy == KMESH_LB_LEAST_REQUEST && l.count > 1) {
		other = kmesh_pick_in_level(cg, span, (__u64)l.cum_base << 32 | (bpf_get_prandom_u32() % range), now,
					    flags);
		if (other != NO_INDEX && other != index &&
		    load_of(cluster_id, cv, &l, other, index) < load_of(cluster_id, cv, &l, index, other))
			index = other;
	}
	return index == NO_INDEX ? NULL : endpoint_at(cluster_id, cv->generation, index);
}

/* *conn_flags: the KMESH_CONN_* the connection needs (the cluster's policy decides). */
static __always_inline struct kmesh_endpoint_value *pick_endpoint(struct bpf_sock_addr *ctx, __u32 cluster_id,
								  __u8 slot, __u32 *conn_flags)
{
	struct kmesh_cluster_value *live = lookup_cluster(cluster_id, slot);
	struct kmesh_cluster_policy *pol;
	struct kmesh_cluster_value cv;
	struct kmesh_endpoint_key key;
	__u32 ticket, unused;

	if (!live)
		return NULL;
	/* One copy: generation, count and weights must belong to the same endpoint set. */
	__builtin_memcpy(&cv, live, sizeof(cv));
	if (cv.endpoint_count == 0 || cv.total_weight == 0)
		return NULL;
	if (cv.flags & KMESH_CLUSTER_RESILIENT) {
		pol = bpf_map_lookup_elem(&kmesh_cl_policy, &cluster_id);
		if (pol) {
			*conn_flags = KMESH_CONN_TRACKED | (pol->syn_rto_jiffies ? KMESH_CONN_SYN_RTO : 0);
			return pick_resilient(ctx, cluster_id, &cv, pol);
		}
	}

	switch (cv.lb_policy) {
	case KMESH_LB_ROUND_ROBIN:
		ticket = next_round_robin(cluster_id, cv.flags & KMESH_CLUSTER_UNIFORM_WEIGHTS ?
							  cv.endpoint_count : cv.total_weight);
		break;
	default:
		ticket = bpf_get_prandom_u32() % cv.total_weight;
		break;
	}

	if (cv.flags & KMESH_CLUSTER_UNIFORM_WEIGHTS) {
		key.cluster_id = cluster_id;
		key.generation = cv.generation;
		key.index = cv.lb_policy == KMESH_LB_ROUND_ROBIN ? ticket :
								 ticket % cv.endpoint_count;
		return bpf_map_lookup_elem(&kmesh_endpoints, &key);
	}
	return find_weighted(cluster_id, cv.generation, 0, cv.endpoint_count - 1, ticket, &unused);
}

/* Exact listener first, then the wildcard address of the same family on the port. */
static __always_inline struct kmesh_listener_value *find_listener(struct kmesh_listener_key *key)
{
	struct kmesh_listener_value *lv = bpf_map_lookup_elem(&kmesh_listeners, key);
	__u32 *w = (__u32 *)key->addr;

	if (lv)
		return lv;
	if (addr_is_v4mapped(key->addr)) {
		w[3] = 0;
	} else {
		w[0] = 0;
		w[1] = 0;
		w[2] = 0;
		w[3] = 0;
	}
	return bpf_map_lookup_elem(&kmesh_listeners, key);
}

/*
 * Choose the endpoint for a dialled address. On success *key->addr is left as
 * the listener address that matched (possibly the wildcard); the original is in vip.
 */
static __always_inline struct kmesh_endpoint_value *
steer(struct bpf_sock_addr *ctx, const __u8 *vip, __u16 port, __u8 protocol, __u32 *cluster_id, __u32 *conn_flags)
{
	struct kmesh_listener_key key = { .port = port, .protocol = protocol, .slot = active_slot() };
	struct kmesh_listener_value *lv;

	__builtin_memcpy(key.addr, vip, sizeof(key.addr));
	lv = find_listener(&key);
	if (!lv)
		return NULL;
	*cluster_id = pick_cluster(lv);
	return pick_endpoint(ctx, *cluster_id, key.slot, conn_flags);
}

/* The per-CPU note of this connect for the sockops callbacks that follow it (kmesh_conn_hint). */
static __always_inline void hint_conn(__u64 cookie, __u32 flags)
{
	__u32 zero = 0;
	struct kmesh_conn_hint *hint = bpf_map_lookup_elem(&kmesh_conn_hint, &zero);

	if (hint) {
		hint->cookie = cookie;
		hint->flags = flags;
	}
}

/* Same VIP, port and cluster (the endpoint is the shared entry's key). */
static __always_inline int same_origin(const struct kmesh_sock_origin *a, const struct kmesh_sock_origin *b)
{
	const __u32 *x = (const __u32 *)a->vip, *y = (const __u32 *)b->vip;

	return x[0] == y[0] && x[1] == y[1] && x[2] == y[2] && x[3] == y[3] && a->vip_port == b->vip_port &&
	       a->cluster_id == b->cluster_id;
}

/*
 * TCP: nothing if the endpoint's shared origin is this one and the cluster needs no bookkeeping, else by
 * socket cookie while kmesh_l4_sockops is attached; else (UDP, no L4 sockops, or the hash is full) in the
 * socket's storage: see kmesh_sock_origin_map.h. The hint is left either way: a registered cgroup this one
 * is nested in then knows the connect was steered (remember_direct).
 */
static __always_inline void remember_origin(struct bpf_sock_addr *ctx, const __u8 *vip, __u16 vip_port,
					    const struct kmesh_endpoint_value *ep, __u32 cluster_id, __u8 protocol,
					    __u32 conn_flags)
{
	struct kmesh_conn conn = { .origin = { .vip_port = vip_port, .endpoint_port = ep->port, .cluster_id = cluster_id },
				   .flags = conn_flags };
	struct kmesh_sock_origin *origin, *shared;
	__u64 cookie;

	__builtin_memcpy(conn.origin.vip, vip, sizeof(conn.origin.vip));
	__builtin_memcpy(conn.origin.endpoint, ep->addr, sizeof(conn.origin.endpoint));
	if (protocol == IPPROTO_TCP) {
		cookie = bpf_get_socket_cookie(ctx);
		shared = conn_flags ? 0 : kmesh_shared_origin(ep->addr, ep->port);
		if (shared && same_origin(shared, &conn.origin)) {
			/* an entry of an earlier attempt of this socket would shadow the shared one (a lookup
			 * first: a delete takes the bucket lock even when there is nothing to delete; none
			 * at all without the L4 sockops program, which keeps the hash empty) */
			if (kmesh_conns_by_cookie() && bpf_map_lookup_elem(&kmesh_conn_origin, &cookie))
				bpf_map_delete_elem(&kmesh_conn_origin, &cookie);
			hint_conn(cookie, KMESH_CONN_SHARED);
			return;
		}
		hint_conn(cookie, conn_flags);
		/* BPF_ANY: a socket may connect again after a failed attempt */
		if (kmesh_conns_by_cookie() && bpf_map_update_elem(&kmesh_conn_origin, &cookie, &conn, BPF_ANY) == 0)
			return;
	}
	origin = bpf_sk_storage_get(&kmesh_sock_origin, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	/* without memory for it the socket is still steered; getpeername shows the endpoint */
	if (origin)
		__builtin_memcpy(origin, &conn.origin, sizeof(conn.origin));
}

/*
 * A TCP connect to an endpoint's own address, not steered here: marked, so that readers do not take the
 * endpoint's shared origin for its own (in the hash while kmesh_l4_sockops deletes entries at close, else
 * in the socket's storage as an all-zero origin). Unless a registered cgroup nested in this one steered it
 * just now (its program ran first, and left the per-CPU hint).
 */
static __always_inline void remember_direct(struct bpf_sock_addr *ctx, const __u8 *addr, __u16 port)
{
	struct kmesh_conn conn = { .flags = KMESH_CONN_DIRECT };
	struct kmesh_sock_origin *marker;
	struct kmesh_conn_hint *hint;
	__u32 zero = 0;
	__u64 cookie;

	if (!kmesh_shared_origin(addr, port))
		return;
	cookie = bpf_get_socket_cookie(ctx);
	hint = bpf_map_lookup_elem(&kmesh_conn_hint, &zero);
	if (hint && hint->cookie == cookie)
		return;
	hint_conn(cookie, KMESH_CONN_DIRECT);
	if (kmesh_conns_by_cookie() && bpf_map_update_elem(&kmesh_conn_origin, &cookie, &conn, BPF_ANY) == 0)
		return;
	marker = bpf_sk_storage_get(&kmesh_sock_origin, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (marker)
		__builtin_memset(marker, 0, sizeof(*marker));
}

static __always_inline void remember_udp_reverse(void *ctx, const __u8 *vip, __u16 vip_port,
						 const struct kmesh_endpoint_value *ep)
{
	struct kmesh_udp_reverse_key key = { .cookie = bpf_get_socket_cookie(ctx),
					      .endpoint_port = ep->port };
	struct kmesh_udp_reverse_value value = { .vip_port = vip_port };

	__builtin_memcpy(key.endpoint, ep->addr, sizeof(key.endpoint));
	__builtin_memcpy(value.vip, vip, sizeof(value.vip));
	bpf_map_update_elem(&kmesh_udp_reverse, &key, &value, BPF_ANY);
}

static __always_inline int steer4(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	struct kmesh_endpoint_value *ep;
	__u8 vip[16];
	__u16 port = bpf_ntohs(ctx->user_port);
	__u8 protocol = ctx->protocol;
	__u32 cluster_id = 0, conn_flags = 0;

	addr_set_v4(vip, ctx->user_ip4);
	/* HTTP listeners with routes: the first request chooses (kmesh_l7.bpf.c) */
	if (protocol == IPPROTO_TCP && !is_sendmsg && l7_handoff4(ctx, vip, port))
		return SOCK_ADDR_ALLOW;
	ep = steer(ctx, vip, port, protocol, &cluster_id, &conn_flags);
	if (!ep && protocol == IPPROTO_TCP && !is_sendmsg)
		remember_direct(ctx, vip, port);
	/* An IPv4 socket cannot reach an IPv6 endpoint: leave it alone. */
	if (!ep || !addr_is_v4mapped(ep->addr))
		return SOCK_ADDR_ALLOW;

	ctx->user_ip4 = ((const __u32 *)ep->addr)[3];
	ctx->user_port = bpf_htons(ep->port);
	if (protocol == IPPROTO_UDP)
		remember_udp_reverse(ctx, vip, port, ep);
	if (!is_sendmsg)
		remember_origin(ctx, vip, port, ep, cluster_id, protocol, conn_flags);
	return SOCK_ADDR_ALLOW;
}

static __always_inline int steer6(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	struct kmesh_endpoint_value *ep;
	__u8 vip[16];
	__u16 port = bpf_ntohs(ctx->user_port);
	__u8 protocol = ctx->protocol;
	__u32 cluster_id = 0, conn_flags = 0;

	read_user_ip6(ctx, vip);
	ep = steer(ctx, vip, port, protocol, &cluster_id, &conn_flags);
	if (!ep && protocol == IPPROTO_TCP && !is_sendmsg)
		remember_direct(ctx, vip, port);
	if (!ep)
		return SOCK_ADDR_ALLOW;

	/* A v4 endpoint is written v4-mapped, which a dual-stack socket can dial. */
	write_user_ip6(ctx, ep->addr);
	ctx->user_port = bpf_htons(ep->port);
	if (protocol == IPPROTO_UDP)
		remember_udp_reverse(ctx, vip, port, ep);
	if (!is_sendmsg)
		remember_origin(ctx, vip, port, ep, cluster_id, protocol, conn_flags);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/connect4")
int kmesh_connect4(struct bpf_sock_addr *ctx)
{
	return steer4(ctx, 0);
}

SEC("cgroup/connect6")
int kmesh_connect6(struct bpf_sock_addr *ctx)
{
	return steer6(ctx, 0);
}

SEC("cgroup/sendmsg4")
int kmesh_sendmsg4(struct bpf_sock_addr *ctx)
{
	return steer4(ctx, 1);
}

SEC("cgroup/sendmsg6")
int kmesh_sendmsg6(struct bpf_sock_addr *ctx)
{
	return steer6(ctx, 1);
}

/* Replies from an endpoint appear to come from the VIP the application addressed. */
SEC("cgroup/recvmsg4")
int kmesh_recvmsg4(struct bpf_sock_addr *ctx)
{
	struct kmesh_udp_reverse_key key = { .cookie = bpf_get_socket_cookie(ctx),
					      .endpoint_port = bpf_ntohs(ctx->user_port) };
	struct kmesh_udp_reverse_value *rev;

	addr_set_v4(key.endpoint, ctx->user_ip4);
	rev = bpf_map_lookup_elem(&kmesh_udp_reverse, &key);
	if (!rev || !addr_is_v4mapped(rev->vip))
		return SOCK_ADDR_ALLOW;
	ctx->user_ip4 = ((const __u32 *)rev->vip)[3];
	ctx->user_port = bpf_htons(rev->vip_port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/recvmsg6")
int kmesh_recvmsg6(struct bpf_sock_addr *ctx)
{
	struct kmesh_udp_reverse_key key = { .cookie = bpf_get_socket_cookie(ctx),
					      .endpoint_port = bpf_ntohs(ctx->user_port) };
	struct kmesh_udp_reverse_value *rev;

	read_user_ip6(ctx, key.endpoint);
	rev = bpf_map_lookup_elem(&kmesh_udp_reverse, &key);
	if (!rev)
		return SOCK_ADDR_ALLOW;
	write_user_ip6(ctx, rev->vip);
	ctx->user_port = bpf_htons(rev->vip_port);
	return SOCK_ADDR_ALLOW;
}

/* The application sees the address it dialled, not the endpoint. */
SEC("cgroup/getpeername4")
int kmesh_getpeername4(struct bpf_sock_addr *ctx)
{
	struct kmesh_sock_origin *origin = kmesh_origin_of(bpf_get_socket_cookie(ctx), ctx->sk);

	if (!origin || !addr_is_v4mapped(origin->vip))
		return SOCK_ADDR_ALLOW;
	ctx->user_ip4 = ((const __u32 *)origin->vip)[3];
	ctx->user_port = bpf_htons(origin->vip_port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getpeername6")
int kmesh_getpeername6(struct bpf_sock_addr *ctx)
{
	struct kmesh_sock_origin *origin = kmesh_origin_of(bpf_get_socket_cookie(ctx), ctx->sk);

	if (!origin)
		return SOCK_ADDR_ALLOW;
	write_user_ip6(ctx, origin->vip);
	ctx->user_port = bpf_htons(origin->vip_port);
	return SOCK_ADDR_ALLOW;
}

/*
 * Resilience bookkeeping for steered TCP connections (their origin names the
 * endpoint): active connections from connect() to close, and the connection's outcome.
 * Refused, timed out (SYN_SENT -> CLOSE with that error) and reset after being
 * established count as failures; an established connection that closed without error is
 * a success (counted and ejected by kmesh_outlier.h). Nothing runs per packet.
 */
#define SOL_TCP 6
#define TCP_SYNCNT 7
#define ECONNRESET 104
#define ECONNREFUSED 111
#define ETIMEDOUT 110
#define EHOSTUNREACH 113
#define ENETUNREACH 101
#define AF_INET 2
#define AF_INET6 10

/* The one kernel-internal field read here (CO-RE): the error the connection ended with. */
struct sock___kmesh_l4 {
	int sk_err;
} __attribute__((preserve_access_index));

static __always_inline int sock_error(struct bpf_sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	return tp ? ((struct sock___kmesh_l4 *)tp)->sk_err : 0;
}

static __always_inline struct kmesh_ep_state *origin_state(const struct kmesh_sock_origin *origin)
{
	return ep_state_of(origin->cluster_id, origin->endpoint, origin->endpoint_port);
}

/*
 * True for the first run of a callback on this connection (see kmesh_resilience.h): the claim is kept in
 * the connection's kmesh_conn flags (`claim` points there; hash entry or stash), else, for an origin in
 * socket storage, in kmesh_res_sock.
 */
static __always_inline int claim_once(__u32 *claim, struct bpf_sock *sk, __u32 bit)
{
	if (!claim)
		return kmesh_res_claim(sk, bit);
	if (*claim & bit)
		return 0;
	*claim |= bit;
	return 1;
}

/* The connection was counted at connect (see kmesh_res_started): else its end is not counted either. */
static __always_inline int was_started(__u32 *claim, struct bpf_sock *sk)
{
	return claim ? (*claim & KMESH_CONN_STARTED) != 0 : kmesh_res_started(sk);
}

/* Only clusters with resilience settings are tracked: a plain cluster costs one policy lookup here. */
static __always_inline void connection_started(struct bpf_sock_ops *skops, struct bpf_sock *sk,
					       const struct kmesh_sock_origin *origin, __u32 *claim)
{
	struct kmesh_cluster_policy *pol = bpf_map_lookup_elem(&kmesh_cl_policy, &origin->cluster_id);
	struct kmesh_ep_state_key key = { .port = origin->endpoint_port, .cluster_id = origin->cluster_id };
	struct kmesh_ep_state init = {};
	struct kmesh_cluster_state *cs;
	struct kmesh_ep_state *st;
	int retries;

	if (!pol || !claim_once(claim, sk, KMESH_CONN_STARTED))
		return;
	__builtin_memcpy(key.addr, origin->endpoint, sizeof(key.addr));
	st = bpf_map_lookup_elem(&kmesh_ep_state, &key);
	if (!st) {
		bpf_map_update_elem(&kmesh_ep_state, &key, &init, BPF_NOEXIST);
		st = bpf_map_lookup_elem(&kmesh_ep_state, &key);
	}
	if (!st)
		return;
	__sync_fetch_and_add(&st->active, 1);
	cs = bpf_map_lookup_elem(&kmesh_cl_state, &origin->cluster_id);
	if (cs)
		__sync_fetch_and_add(&cs->active, 1);
	/* the connect timeout: this many SYN retransmissions, spaced by TIMEOUT_INIT's reply */
	if (pol->syn_rto_jiffies) {
		retries = pol->syn_retries;
		bpf_setsockopt(skops, SOL_TCP, TCP_SYNCNT, &retries, sizeof(retries));
	}
}

static __always_inline void connection_ended(struct bpf_sock_ops *skops, struct bpf_sock *sk,
					     const struct kmesh_sock_origin *origin, __u32 *claim)
{
	struct kmesh_ep_state *st = origin_state(origin);
	/* The state it leaves: the socket's own, which tcp_set_state() stores only after this callback. Not
	 * args[0]: it shares its word with reply, which kmesh-probe sets at close (its once-per-callback mark)
	 * and which this program sees when it runs after the probe (linked to the cgroup after it). */
	int connecting = skops->state == BPF_TCP_SYN_SENT;
	struct kmesh_cluster_state *cs;
	int err, failed;

	/* not tracked (a plain cluster), or the state went with its endpoint; or not counted at connect; or
	 * counted already by the attachment of another registered cgroup this one is nested in */
	if (!st || !was_started(claim, sk) || !claim_once(claim, sk, KMESH_CONN_ENDED))
		return;
	__sync_fetch_and_add(&st->active, -1);
	cs = bpf_map_lookup_elem(&kmesh_cl_state, &origin->cluster_id);
	if (cs)
		__sync_fetch_and_add(&cs->active, -1);
	err = sock_error(sk);
	/* a connect the application gave up on first (no error) says nothing about the endpoint */
	if (connecting)
		failed = err == ECONNREFUSED || err == ETIMEDOUT || err == EHOSTUNREACH || err == ENETUNREACH;
	else
		failed = err == ECONNRESET;
	if (failed)
		record_failure(origin->cluster_id, st, connecting && err == ETIMEDOUT);
	else if (!connecting)
		record_success(origin->cluster_id, st);
}

/* What a connection needs of the sockops program; an origin in socket storage (the fallback when the
 * hash is full, the L7 handoff) records none, so everything is looked up as for a tracked one. */
#define CONN_FLAGS_UNKNOWN (KMESH_CONN_TRACKED | KMESH_CONN_SYN_RTO)

/*
 * The origin in `conn` (hash entry or stash), else in the socket's storage. *claim: the connection's
 * flags to claim callbacks in, NULL for an origin in socket storage.
 */
static __always_inline struct kmesh_sock_origin *origin_in(struct kmesh_conn *conn, struct bpf_sock *sk, __u32 *flags,
							   __u32 **claim)
{
	if (conn) {
		*flags = conn->flags;
		*claim = &conn->flags;
		return &conn->origin;
	}
	*flags = CONN_FLAGS_UNKNOWN;
	*claim = 0;
	return bpf_sk_storage_get(&kmesh_sock_origin, sk, 0, 0);
}

static __always_inline struct kmesh_sock_origin *conn_origin(__u64 cookie, struct bpf_sock *sk, __u32 *flags,
							     __u32 **claim)
{
	return origin_in(bpf_map_lookup_elem(&kmesh_conn_origin, &cookie), sk, flags, claim);
}

/*
 * A closing connection, taken out of kmesh_conn_origin (its entry is deleted, so the hash
 * holds live connections only) and stashed for the programs that run after this one in the
 * same callback (kmesh-probe, this program of an enclosing registered cgroup). This run works
 * on its own copy, *mine: a close in process context (a reset read from the socket's backlog,
 * an abort) can be interrupted by a softirq close on the same CPU that takes the same stash
 * slot, and would then count its outcome against the other connection's endpoint, or not at all.
 */
static __always_inline struct kmesh_sock_origin *take_origin(__u64 cookie, __u32 snd_nxt, struct bpf_sock *sk,
							     struct kmesh_conn *mine, __u32 *flags, __u32 **claim)
{
	struct kmesh_conn *conn = bpf_map_lookup_elem(&kmesh_conn_origin, &cookie);
	__u32 slot = cookie % KMESH_ORIGIN_STASH_SLOTS;
	struct kmesh_origin_stash *stash = bpf_map_lookup_elem(&kmesh_origin_stash, &slot);
	struct kmesh_sock_origin *origin;

	if (!conn) {
		conn = kmesh_stashed_conn(cookie, snd_nxt);
		if (conn) {
			__builtin_memcpy(mine, conn, sizeof(*mine));
			return origin_in(mine, sk, flags, claim);
		}
		origin = origin_in(0, sk, flags, claim);
		/* none of its own: the programs after this one go straight to the endpoint's shared origin */
		if (!origin && stash) {
			stash->cookie = cookie;
			stash->snd_nxt = snd_nxt;
			stash->conn.flags = KMESH_CONN_SHARED;
		}
		return origin;
	}
	*claim = 0;
	if (!stash)
		return 0;
	__builtin_memcpy(mine, conn, sizeof(*mine));
	stash->cookie = cookie;
	stash->snd_nxt = snd_nxt;
	__builtin_memcpy(&stash->conn, mine, sizeof(stash->conn));
	bpf_map_delete_elem(&kmesh_conn_origin, &cookie);
	return origin_in(mine, sk, flags, claim);
}

/* The claims of this run (in *mine) for the programs after it, while the stash slot is still this connection's. */
static __always_inline void publish_claims(__u64 cookie, __u32 snd_nxt, const struct kmesh_conn *mine)
{
	struct kmesh_conn *stashed = kmesh_stashed_conn(cookie, snd_nxt);

	if (stashed)
		stashed->flags = mine->flags;
}

/* Keep other sock_ops programs' callback flags: the helper sets, it does not OR. */
static __always_inline void want_state_cb(struct bpf_sock_ops *skops)
{
	__u32 flags = skops->bpf_sock_ops_cb_flags;

	if (!(flags & BPF_SOCK_OPS_STATE_CB_FLAG))
		bpf_sock_ops_cb_flags_set(skops, flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/*
 * The steered TCP connections' sockops: deletes the origin when the connection closes,
 * and does the resilience bookkeeping of clusters that have a policy. Only the connect,
 * SYN timeout and close callbacks do work; a port-0 origin is a connect refused by
 * max_connections (no endpoint).
 */
SEC("sockops")
int kmesh_l4_sockops(struct bpf_sock_ops *skops)
{
	struct kmesh_sock_origin *origin;
	struct kmesh_cluster_policy *pol;
	struct kmesh_conn_hint *hint;
	struct kmesh_conn mine;
	struct bpf_sock *sk;
	__u32 op = skops->op, flags, zero = 0, *claim;
	__u64 cookie;
	int hinted;

	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_TIMEOUT_INIT && op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	if (op == BPF_SOCK_OPS_STATE_CB && skops->args[1] != BPF_TCP_CLOSE)
		return 1;
	sk = skops->sk;
	if (!sk)
		return 1;
	cookie = bpf_get_socket_cookie(skops);
	/* the close callback comes long after connect4's hint */
	hint = op == BPF_SOCK_OPS_STATE_CB ? 0 : bpf_map_lookup_elem(&kmesh_conn_hint, &zero);
	hinted = hint && hint->cookie == cookie;
	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* steered by connect4 just now with a shared origin: nothing to do, now or at close */
		if (hinted && (hint->flags & KMESH_CONN_SHARED))
			break;
		/* ... with an entry of its own, for a plain cluster: nothing but the close callback */
		if (hinted && !(hint->flags & KMESH_CONN_TRACKED)) {
			want_state_cb(skops);
			break;
		}
		origin = conn_origin(cookie, sk, &flags, &claim);
		if (!origin)
			break;
		/* the close callback deletes the origin */
		want_state_cb(skops);
		if ((flags & KMESH_CONN_TRACKED) && origin->endpoint_port)
			connection_started(skops, sk, origin, claim);
		break;
	case BPF_SOCK_OPS_TIMEOUT_INIT:
		if (hinted && !(hint->flags & KMESH_CONN_SYN_RTO))
			break;
		origin = conn_origin(cookie, sk, &flags, &claim);
		if (!origin || !(flags & KMESH_CONN_SYN_RTO) || !origin->endpoint_port)
			break;
		/* the reply is the SYN retransmission timeout in jiffies */
		pol = bpf_map_lookup_elem(&kmesh_cl_policy, &origin->cluster_id);
		if (pol && pol->syn_rto_jiffies)
			skops->reply = pol->syn_rto_jiffies;
		break;
	default:
		origin = take_origin(cookie, skops->snd_nxt, sk, &mine, &flags, &claim);
		if (!origin || !(flags & KMESH_CONN_TRACKED) || !origin->endpoint_port)
			break;
		connection_ended(skops, sk, origin, claim);
		if (claim)
			publish_claims(cookie, skops->snd_nxt, &mine);
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
