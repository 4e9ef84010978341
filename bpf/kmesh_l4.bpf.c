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

#define SOCK_ADDR_ALLOW 1

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_LISTENERS * KMESH_CONFIG_SLOTS);
	__type(key, struct kmesh_listener_key);
	__type(value, struct kmesh_listener_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_listeners SEC(".maps");

/* HASH, not ARRAY: an update replaces the element whole, so readers never see a torn value. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS * KMESH_CONFIG_SLOTS);
	__type(key, struct kmesh_cluster_key);
	__type(value, struct kmesh_cluster_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_clusters SEC(".maps");

/* Which slot of kmesh_listeners/kmesh_clusters is the live config (0 or 1). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} kmesh_active_slot SEC(".maps");

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

/* The first endpoint whose cumulative weight exceeds the ticket. */
static __always_inline struct kmesh_endpoint_value *
find_weighted(__u32 cluster_id, const struct kmesh_cluster_value *cv, __u32 ticket)
{
	struct kmesh_endpoint_key key = { .cluster_id = cluster_id, .generation = cv->generation };
	struct kmesh_endpoint_value *ep;
	__u32 lo = 0, hi = cv->endpoint_count - 1;
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
	return bpf_map_lookup_elem(&kmesh_endpoints, &key);
}

/* Read once per connect: the listener and its clusters come from the same config. */
static __always_inline __u8 active_slot(void)
{
	__u32 zero = 0;
	__u32 *slot = bpf_map_lookup_elem(&kmesh_active_slot, &zero);

	return slot && *slot ? 1 : 0;
}

static __always_inline struct kmesh_cluster_value *lookup_cluster(__u32 cluster_id, __u8 slot)
{
	struct kmesh_cluster_key key = { .id = cluster_id, .slot = slot };

	return bpf_map_lookup_elem(&kmesh_clusters, &key);
}

static __always_inline struct kmesh_endpoint_value *pick_endpoint(__u32 cluster_id, __u8 slot)
{
	struct kmesh_cluster_value *live = lookup_cluster(cluster_id, slot);
	struct kmesh_cluster_value cv;
	struct kmesh_endpoint_key key;
	__u32 ticket;

	if (!live)
		return NULL;
	/* One copy: generation, count and weights must belong to the same endpoint set. */
	__builtin_memcpy(&cv, live, sizeof(cv));
	if (cv.endpoint_count == 0 || cv.total_weight == 0)
		return NULL;

	switch (cv.lb_policy) {
	case KMESH_LB_ROUND_ROBIN:
		ticket = next_round_robin(cluster_id, cv.flags & KMESH_CLUSTER_UNIFORM_WEIGHTS ?
							  cv.endpoint_count : cv.total_weight);
		break;
	case KMESH_LB_MAGLEV:
	case KMESH_LB_RING_HASH:
		/* Affinity by calling workload: the same cgroup lands on the same endpoint. */
		ticket = (__u32)(bpf_get_current_cgroup_id() * 0x9E3779B97F4A7C15ULL >> 32) % cv.total_weight;
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
	return find_weighted(cluster_id, &cv, ticket);
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
steer(const __u8 *vip, __u16 port, __u8 protocol, __u32 *cluster_id)
{
	struct kmesh_listener_key key = { .port = port, .protocol = protocol, .slot = active_slot() };
	struct kmesh_listener_value *lv;

	__builtin_memcpy(key.addr, vip, sizeof(key.addr));
	lv = find_listener(&key);
	if (!lv)
		return NULL;
	*cluster_id = pick_cluster(lv);
	return pick_endpoint(*cluster_id, key.slot);
}

static __always_inline void remember_origin(struct bpf_sock_addr *ctx, const __u8 *vip, __u16 vip_port,
					    const struct kmesh_endpoint_value *ep, __u32 cluster_id)
{
	struct kmesh_sock_origin *origin =
		bpf_sk_storage_get(&kmesh_sock_origin, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	/* without memory for it the socket is still steered; getpeername shows the endpoint */
	if (!origin)
		return;
	origin->vip_port = vip_port;
	origin->endpoint_port = ep->port;
	origin->cluster_id = cluster_id;
	__builtin_memcpy(origin->vip, vip, sizeof(origin->vip));
	__builtin_memcpy(origin->endpoint, ep->addr, sizeof(origin->endpoint));
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
	__u32 cluster_id = 0;

	addr_set_v4(vip, ctx->user_ip4);
	ep = steer(vip, port, protocol, &cluster_id);
	/* An IPv4 socket cannot reach an IPv6 endpoint: leave it alone. */
	if (!ep || !addr_is_v4mapped(ep->addr))
		return SOCK_ADDR_ALLOW;

	ctx->user_ip4 = ((const __u32 *)ep->addr)[3];
	ctx->user_port = bpf_htons(ep->port);
	if (protocol == IPPROTO_UDP)
		remember_udp_reverse(ctx, vip, port, ep);
	if (!is_sendmsg)
		remember_origin(ctx, vip, port, ep, cluster_id);
	return SOCK_ADDR_ALLOW;
}

static __always_inline int steer6(struct bpf_sock_addr *ctx, int is_sendmsg)
{
	struct kmesh_endpoint_value *ep;
	__u8 vip[16];
	__u16 port = bpf_ntohs(ctx->user_port);
	__u8 protocol = ctx->protocol;
	__u32 cluster_id = 0;

	read_user_ip6(ctx, vip);
	ep = steer(vip, port, protocol, &cluster_id);
	if (!ep)
		return SOCK_ADDR_ALLOW;

	/* A v4 endpoint is written v4-mapped, which a dual-stack socket can dial. */
	write_user_ip6(ctx, ep->addr);
	ctx->user_port = bpf_htons(ep->port);
	if (protocol == IPPROTO_UDP)
		remember_udp_reverse(ctx, vip, port, ep);
	if (!is_sendmsg)
		remember_origin(ctx, vip, port, ep, cluster_id);
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
	struct kmesh_sock_origin *origin = bpf_sk_storage_get(&kmesh_sock_origin, ctx->sk, 0, 0);

	if (!origin || !addr_is_v4mapped(origin->vip))
		return SOCK_ADDR_ALLOW;
	ctx->user_ip4 = ((const __u32 *)origin->vip)[3];
	ctx->user_port = bpf_htons(origin->vip_port);
	return SOCK_ADDR_ALLOW;
}

SEC("cgroup/getpeername6")
int kmesh_getpeername6(struct bpf_sock_addr *ctx)
{
	struct kmesh_sock_origin *origin = bpf_sk_storage_get(&kmesh_sock_origin, ctx->sk, 0, 0);

	if (!origin)
		return SOCK_ADDR_ALLOW;
	write_user_ip6(ctx, origin->vip);
	ctx->user_port = bpf_htons(origin->vip_port);
	return SOCK_ADDR_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
