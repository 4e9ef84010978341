/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The connect4 hand-off of L7 listeners, included by the L4 object (which owns
 * connect4) and the L7 object (which reads the same maps): the loader pins maps by
 * name, so the identical definitions here are one live instance.
 *
 * A connection to a listener that has HTTP routes goes to the daemon's anchor listener
 * instead of an endpoint; the first request then chooses the upstream (kmesh_l7.bpf.c).
 * When no anchor is listening (no daemon, or it is restarting without its sockets) the
 * connection keeps connect-time routing: nothing is sent to a dead address.
 */
#ifndef KMESH_L7_HANDOFF_H
#define KMESH_L7_HANDOFF_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "kmesh_maps.h"
#include "kmesh_l7.h"
#include "kmesh_sock_origin_map.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_L7_MAX_LISTENERS);
	__type(key, struct kmesh_listener_key);
	__type(value, struct kmesh_l7_listener);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_l7_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kmesh_l7_sock);
} kmesh_l7_sock SEC(".maps");

/* Is something listening on the anchor address? */
static __always_inline int l7_anchor_alive(struct bpf_sock_addr *ctx, const struct kmesh_l7_listener *l)
{
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;

	t.ipv4.daddr = l->anchor_ip4;
	t.ipv4.dport = l->anchor_port;
	sk = bpf_sk_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/*
 * IPv4 TCP connect() to vip:port (vip as ::ffff:a.b.c.d). Returns 1 when the socket was
 * sent to the anchor, 0 to leave it to connect-time routing.
 */
static __always_inline int l7_handoff4(struct bpf_sock_addr *ctx, const __u8 *vip, __u16 port)
{
	struct kmesh_listener_key key = { .port = port, .protocol = IPPROTO_TCP };
	struct kmesh_l7_listener *l;
	struct kmesh_sock_origin *origin;
	struct kmesh_l7_sock *mark;
	__u32 *w = (__u32 *)key.addr;

	__builtin_memcpy(key.addr, vip, sizeof(key.addr));
	l = bpf_map_lookup_elem(&kmesh_l7_listeners, &key);
	if (!l) {
		w[3] = 0; /* the port's wildcard listener */
		l = bpf_map_lookup_elem(&kmesh_l7_listeners, &key);
	}
	if (!l || !l7_anchor_alive(ctx, l))
		return 0;
	mark = bpf_sk_storage_get(&kmesh_l7_sock, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!mark)
		return 0;
	mark->listener = key;
	ctx->user_ip4 = l->anchor_ip4;
	ctx->user_port = l->anchor_port;
	origin = bpf_sk_storage_get(&kmesh_sock_origin, ctx->sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (origin) {
		__u32 *e = (__u32 *)origin->endpoint;

		__builtin_memcpy(origin->vip, vip, sizeof(origin->vip));
		origin->vip_port = port;
		e[0] = 0;
		e[1] = 0;
		e[2] = bpf_htonl(0xffff);
		e[3] = l->anchor_ip4;
		origin->endpoint_port = bpf_ntohs(l->anchor_port);
		origin->cluster_id = 0;
	}
	return 1;
}

#endif /* KMESH_L7_HANDOFF_H */
