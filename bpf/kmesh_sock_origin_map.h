/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Where a steered socket was going (struct kmesh_sock_origin), defined once for every
 * object that uses it: the loader pins maps by name in one directory, so identical
 * definitions share one live instance. The L4 programs write it when they steer a
 * connect(); getpeername, the L4 sockops program and kmesh-probe read it.
 *
 * Two places, one reader function:
 * - TCP: kmesh_conn_origin, a hash by socket cookie. connect() adds the entry, the L4
 *   sockops program (attached with connect4 to every registered cgroup) deletes it when
 *   the connection reaches TCP_CLOSE. Why not socket-local storage: creating it costs
 *   two allocations with memcg charging at connect and an RCU free at close, ≈1.5 µs a
 *   connection (perf, bench/l4), against ≈0.2 µs for a hash element with its delete.
 * - Everything else, and TCP when the hash is full: kmesh_sock_origin, the socket's
 *   local storage (UDP has no close callback to delete a hash entry; the L7 handoff
 *   keeps its own). It goes with the socket, so it needs no capacity and no clean-up.
 * A TCP connect that fails inside the kernel after connect4 but before it sends the SYN
 * (no route to the endpoint, no free local port) never gets the close callback: its hash
 * entry stays. Such entries only take capacity: once the hash is full, connects use the
 * socket storage again (correct, at the old cost).
 */
#ifndef KMESH_SOCK_ORIGIN_MAP_H
#define KMESH_SOCK_ORIGIN_MAP_H

#include <bpf/bpf_helpers.h>
#include "kmesh_maps.h"

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

/*
 * Programs that run after the deleting one in the same TCP_CLOSE callback (the probe, or
 * the same program of an enclosing registered cgroup) find the origin here. A callback
 * runs on one CPU without migrating; slots by cookie, so that a callback of another
 * socket interrupting this one (softirq) rarely takes the same slot.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KMESH_ORIGIN_STASH_SLOTS);
	__type(key, __u32);
	__type(value, struct kmesh_origin_stash);
} kmesh_origin_stash SEC(".maps");

/* The origin of the socket with this cookie, NULL if it was not steered. */
static __always_inline struct kmesh_sock_origin *kmesh_origin_of(__u64 cookie, struct bpf_sock *sk)
{
	struct kmesh_conn *conn = bpf_map_lookup_elem(&kmesh_conn_origin, &cookie);

	if (conn)
		return &conn->origin;
	return bpf_sk_storage_get(&kmesh_sock_origin, sk, 0, 0);
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

/* As kmesh_origin_of, in a TCP_CLOSE callback: the stash first (the L4 sockops program is attached
 * before kmesh-probe and has usually deleted the entry), then the hash, then the socket's storage. */
static __always_inline struct kmesh_sock_origin *kmesh_closed_origin_of(__u64 cookie, __u32 snd_nxt,
									 struct bpf_sock *sk)
{
	struct kmesh_conn *conn = kmesh_stashed_conn(cookie, snd_nxt);

	if (conn)
		return &conn->origin;
	return kmesh_origin_of(cookie, sk);
}

#endif /* KMESH_SOCK_ORIGIN_MAP_H */
