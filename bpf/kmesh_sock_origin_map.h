/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a steered socket was going (struct kmesh_sock_origin), defined once for every
 * object that uses it: the loader pins maps by name in one directory, so identical
 * definitions share one live instance. The L4 programs write it when they steer a
 * connect(); getpeername, the L4 sockops program and kmesh-probe read it.
 *
 * Two places, one reader function:
 * - TCP while the L4 sockops program is attached (kmesh_l4_mode has KMESH_L4_SOCKOPS: the
 *   daemon attaches it to every registered cgroup once the config has a cluster with a
 *   policy, src/controller/l4-sockops.ts): kmesh_conn_origin, a hash by socket cookie.
 *   connect() adds the entry, the sockops program deletes it when the connection reaches
 *   TCP_CLOSE. Why not socket-local storage: creating it costs two allocations with memcg
 *   charging at connect and an RCU free at close, ≈1.5 µs a connection (perf, bench/l4),
 *   against ≈0.2 µs for a hash element with its delete.
 * - Everything else, TCP without the L4 sockops program and TCP when the hash is full:
 *   kmesh_sock_origin, the socket's local storage (UDP has no close callback to delete a
 *   hash entry; the L7 handoff keeps its own). It goes with the socket, so it needs no
 *   capacity and no clean-up. Without the sockops program a plain config runs no L4
 *   program after connect at all, and only origins of their own (a second VIP, a wildcard
 *   listener) pay for the storage.
 * A TCP connect that fails inside the kernel after connect4 but before it sends the SYN
 * (no route to the endpoint, no free local port) never gets the close callback: its hash
 * entry stays. Such entries only take capacity: once the hash is full, connects use the
 * socket storage again (correct, at the old cost).
 *
 * Most TCP connections need neither: kmesh_ep_origin, written by the daemon with the config,
 * names for an endpoint one origin (VIP, port, cluster) that routes to it. A connect whose
 * origin is that entry, to a cluster without a policy (nothing for the sockops program to
 * count), keeps nothing per connection: readers find the origin by the socket's peer. Any
 * other steered connect (another VIP or a wildcard listener reaching the same endpoint, a
 * tracked cluster) keeps its own entry as above, and a connect to an endpoint's address that
 * was not steered keeps a KMESH_CONN_DIRECT marker (in socket storage: an all-zero origin),
 * so that the peer's entry never applies to it. Limits: a connection that outlives its route's removal from the config reports the
 * endpoint's new entry (or none) from then on; getpeername on a connection a registered
 * workload *accepted* from a peer whose address and source port are a mesh endpoint's
 * (a client bound to the endpoint's own port) shows that endpoint's VIP.
 */
#ifndef KMESH_SOCK_ORIGIN_MAP_H
#define KMESH_SOCK_ORIGIN_MAP_H

#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "kmesh_maps.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kmesh_sock_origin);
} kmesh_sock_origin SEC(".maps");

/* Allocated per element: memory follows the connections in flight, not the bound. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KMESH_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct kmesh_conn);
} kmesh_conn_origin SEC(".maps");

/* kmesh_l4_mode[0]: enum kmesh_l4_mode bits, written by the daemon (src/controller/l4-sockops.ts). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} kmesh_l4_mode SEC(".maps");

/* Written by the daemon (src/controller/origin-index.ts); read-only here. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KMESH_MAX_ENDPOINTS);
	__type(key, struct kmesh_ep_origin_key);
	__type(value, struct kmesh_sock_origin);
} kmesh_ep_origin SEC(".maps");

/*
 * Programs that run after the deleting one in the same TCP_CLOSE callback (the probe, or
 * the same program of an enclosing registered cgroup) find the origin here. A callback
 * runs on one CPU without migrating; slots by cookie, so that a callback of another
 * socket interrupting this one (softirq) rarely takes the same slot; when it does, the
 * slot's cookie and snd_nxt no longer match, and the L4 sockops program, which counts
 * outcomes, works on its own copy (see take_origin).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KMESH_ORIGIN_STASH_SLOTS);
	__type(key, __u32);
	__type(value, struct kmesh_origin_stash);
} kmesh_origin_stash SEC(".maps");

/*
 * Does kmesh_conn_origin hold connections? Only while kmesh_l4_sockops is attached (KMESH_L4_SOCKOPS, set
 * before any entry is added and never cleared while the pins live): it deletes them at close. Without it
 * the hash stays empty, and a lookup by cookie there is a miss that still costs a bucket of a large array
 * (a cache miss, bench/l4): readers ask this first, an array read the verifier inlines.
 */
static __always_inline int kmesh_conns_by_cookie(void)
{
	__u32 zero = 0, *mode = bpf_map_lookup_elem(&kmesh_l4_mode, &zero);

	return mode && (*mode & KMESH_L4_SOCKOPS);
}

/* The origin connections steered to this endpoint (16-byte address, host-order port) share, if any. */
static __always_inline struct kmesh_sock_origin *kmesh_shared_origin(const __u8 *addr, __u16 port)
{
	struct kmesh_ep_origin_key key = { .port = port };

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&kmesh_ep_origin, &key);
}

/* A context field loaded here, as written: clang otherwise sinks such loads into the
 * branches that use them and merges them into one load through a computed context
 * offset, which the verifier rejects. */
#define CTX_LOAD_U32(field)                      \
	({                                       \
		__u32 __v = (field);             \
		asm volatile("" : "+r"(__v));    \
		__v;                             \
	})

/* A TCP socket's peer's shared origin (a socket with no origin of its own). */
static __always_inline struct kmesh_sock_origin *kmesh_peer_origin(struct bpf_sock *sk)
{
	__u32 ip6[4] = { CTX_LOAD_U32(sk->dst_ip6[0]), CTX_LOAD_U32(sk->dst_ip6[1]), CTX_LOAD_U32(sk->dst_ip6[2]),
			 CTX_LOAD_U32(sk->dst_ip6[3]) };
	__u32 ip4[4] = { 0, 0, bpf_htonl(0xffff), CTX_LOAD_U32(sk->dst_ip4) };
	__u16 port = bpf_ntohs(sk->dst_port);

	if (sk->protocol != IPPROTO_TCP)
		return 0;
	if (sk->family == AF_INET6)
		return kmesh_shared_origin((const __u8 *)ip6, port);
	return kmesh_shared_origin((const __u8 *)ip4, port);
}

/* The direct marker in socket storage: no VIP port (a steered origin always has one). */
static __always_inline int kmesh_origin_is_direct(const struct kmesh_sock_origin *origin)
{
	return origin->vip_port == 0;
}

/* The origin of the socket with this cookie, NULL if it was not steered. */
static __always_inline struct kmesh_sock_origin *kmesh_origin_of(__u64 cookie, struct bpf_sock *sk)
{
	struct kmesh_conn *conn = kmesh_conns_by_cookie() ? bpf_map_lookup_elem(&kmesh_conn_origin, &cookie) : 0;
	struct kmesh_sock_origin *origin;

	if (conn) {
		if (conn->flags & KMESH_CONN_DIRECT)
			return 0;
		return &conn->origin;
	}
	origin = bpf_sk_storage_get(&kmesh_sock_origin, sk, 0, 0);
	if (origin)
		return kmesh_origin_is_direct(origin) ? 0 : origin;
	return kmesh_peer_origin(sk);
}

/* In a TCP_CLOSE callback, the connection the L4 sockops program took out of the hash. */
static __always_inline struct kmesh_conn *kmesh_stashed_conn(__u64 cookie, __u32 snd_nxt)
{
	__u32 slot = cookie % KMESH_ORIGIN_STASH_SLOTS;
	struct kmesh_origin_stash *stash = bpf_map_lookup_elem(&kmesh_origin_stash, &slot);

	if (!stash || stash->cookie != cookie || stash->snd_nxt != snd_nxt)
		return 0;
	return &stash->conn;
}

/* As kmesh_origin_of, in a TCP_CLOSE callback: the stash first (the L4 sockops program, when it runs
 * before kmesh-probe, has usually deleted the entry, or found none and left a KMESH_CONN_SHARED record:
 * then only the shared origin is left to look up), then the hash (it runs after the probe on a cgroup
 * it was attached to later, or not at all), then the socket's storage. */
static __always_inline struct kmesh_sock_origin *kmesh_closed_origin_of(__u64 cookie, __u32 snd_nxt,
									 struct bpf_sock *sk)
{
	struct kmesh_conn *conn = kmesh_stashed_conn(cookie, snd_nxt);

	if (conn) {
		if (conn->flags & KMESH_CONN_DIRECT)
			return 0;
		if (conn->flags & KMESH_CONN_SHARED)
			return kmesh_peer_origin(sk);
		return &conn->origin;
	}
	return kmesh_origin_of(cookie, sk);
}

#endif /* KMESH_SOCK_ORIGIN_MAP_H */
