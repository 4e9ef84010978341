// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kmesh-probe: connection events for registered cgroups.
 *
 * A sock_ops program attached to each registered cgroup. For every active TCP
 * connection it records the connect time and the L4 steering decision (copied
 * from kmesh_sock_origin, which the connect4/6 program wrote just before), asks
 * the kernel for state-change callbacks, and emits exactly one OPEN and one
 * CLOSE (or one FAILED) record into a ring buffer. Nothing runs per packet:
 * only the TCP_CONNECT, ACTIVE_ESTABLISHED and STATE callbacks are handled, and
 * byte/RTT/retransmit totals are read from the tcp_sock at close.
 *
 * Memory is bounded: per-socket state lives in socket-local storage (freed with
 * the socket), the ring buffer has a fixed size and a full ring is counted in
 * kmesh_probe_drops instead of blocking anything.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kmesh_maps.h"
#include "kmesh_probe.h"

#define AF_INET 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Owned by the L4 data path (bpf/kmesh_l4.bpf.c); declared identically so that the
 * loader (which pins every map by name in one directory) reuses the live instance:
 * the probe only reads it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KMESH_MAX_TRACKED_SOCKETS);
	__type(key, __u64);
	__type(value, struct kmesh_sock_origin);
} kmesh_sock_origin SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KMESH_PROBE_RINGBUF_BYTES);
} kmesh_probe_events SEC(".maps");

/* Records that did not fit into the ring buffer; user space sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kmesh_probe_drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kmesh_probe_sock);
} kmesh_probe_socks SEC(".maps");

/* One value per (cgroup, attach type) the program is attached to; see kmesh_probe.h. */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, struct kmesh_probe_cgroup);
} kmesh_probe_cgroup SEC(".maps");

static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&kmesh_probe_drops, &zero);

	if (n)
		*n += 1; /* per-CPU slot: no atomics needed */
}

/* Keep other sock_ops programs' callback flags: the helper sets, it does not OR. */
static __always_inline void want_state_cb(struct bpf_sock_ops *skops)
{
	__u32 flags = skops->bpf_sock_ops_cb_flags;

	if (!(flags & BPF_SOCK_OPS_STATE_CB_FLAG))
		bpf_sock_ops_cb_flags_set(skops, flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline __u64 my_cgroup_id(void)
{
	struct kmesh_probe_cgroup *cg = bpf_get_local_storage(&kmesh_probe_cgroup, 0);

	return cg->cgroup_id;
}

/* Create the socket's state on first sight. Returns NULL when the socket belongs to
 * another registered cgroup's program (nested registrations: the innermost one,
 * which runs first, owns it) or storage is exhausted. */
static __always_inline struct kmesh_probe_sock *track(struct bpf_sock_ops *skops, __u64 cg)
{
	struct bpf_sock *sk = skops->sk;
	struct kmesh_probe_sock *st;
	struct kmesh_sock_origin *origin;
	__u64 cookie;

	if (!sk)
		return 0;
	st = bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, 0);
	if (st)
		return st->cgroup_id == cg ? st : 0;
	st = bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	st->start_ns = bpf_ktime_get_ns();
	st->cgroup_id = cg;
	cookie = bpf_get_socket_cookie(skops);
	origin = bpf_map_lookup_elem(&kmesh_sock_origin, &cookie);
	if (origin) {
		__builtin_memcpy(&st->origin, origin, sizeof(st->origin));
		st->flags |= KMESH_PROBE_SOCK_STEERED;
	}
	return st;
}

static __always_inline struct kmesh_probe_sock *lookup(struct bpf_sock *sk, __u64 cg)
{
	struct kmesh_probe_sock *st;

	st = bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, 0);
	if (st && st->cgroup_id != cg)
		return 0;
	return st;
}

/*
 * Not inlined on purpose: as a BPF subprogram it puts struct kmesh_probe_event into
 * the object's BTF (through its parameter), where test/unit/probe-btf.test.ts checks
 * the TypeScript codec against it. One call per connection event costs nothing.
 */
static __noinline void fill(struct kmesh_probe_event *ev, struct bpf_sock_ops *skops,
			    struct kmesh_probe_sock *st, __u8 type)
{
	__u32 *r = (__u32 *)ev->remote;

	ev->cookie = bpf_get_socket_cookie(skops);
	ev->cgroup_id = st->cgroup_id;
	ev->duration_ns = bpf_ktime_get_ns() - st->start_ns;
	ev->bytes_sent = skops->bytes_acked;
	ev->bytes_received = skops->bytes_received;
	/* the sock_ops field holds srtt << 3, as tcp_sock does */
	ev->srtt_us = skops->srtt_us >> 3;
	ev->total_retrans = skops->total_retrans;
	ev->type = type;
	ev->flags = 0;
	ev->pad = 0;
	__builtin_memcpy(&ev->origin, &st->origin, sizeof(ev->origin));
	if (st->flags & KMESH_PROBE_SOCK_STEERED)
		ev->flags |= KMESH_PROBE_F_STEERED;

	if (skops->family == AF_INET6) {
		r[0] = skops->remote_ip6[0];
		r[1] = skops->remote_ip6[1];
		r[2] = skops->remote_ip6[2];
		r[3] = skops->remote_ip6[3];
		ev->flags |= KMESH_PROBE_F_IPV6;
	} else {
		r[0] = 0;
		r[1] = 0;
		r[2] = bpf_htonl(0x0000ffff);
		r[3] = skops->remote_ip4;
	}
	ev->remote_port = (__u16)bpf_ntohl(skops->remote_port);
	ev->local_port = (__u16)skops->local_port;
}

static __always_inline void emit(struct bpf_sock_ops *skops, struct kmesh_probe_sock *st, __u8 type)
{
	struct kmesh_probe_event *ev;

	ev = bpf_ringbuf_reserve(&kmesh_probe_events, sizeof(*ev), 0);
	if (!ev) {
		count_drop();
		return;
	}
	fill(ev, skops, st, type);
	bpf_ringbuf_submit(ev, 0);
}

SEC("sockops")
int kmesh_probe_sockops(struct bpf_sock_ops *skops)
{
	struct kmesh_probe_sock *st;
	struct bpf_sock *sk;
	__u64 cg;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* process context of connect(): start the clock, ask for state changes */
		cg = my_cgroup_id();
		if (track(skops, cg))
			want_state_cb(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		cg = my_cgroup_id();
		/* also picks up connects that started before the program was attached */
		st = track(skops, cg);
		if (!st || (st->flags & KMESH_PROBE_SOCK_ESTABLISHED))
			break;
		st->flags |= KMESH_PROBE_SOCK_ESTABLISHED;
		want_state_cb(skops);
		emit(skops, st, KMESH_PROBE_EV_OPEN);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] = old state, args[1] = new state */
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		sk = skops->sk;
		if (!sk)
			break;
		cg = my_cgroup_id();
		st = lookup(sk, cg);
		if (!st)
			break;
		if (st->flags & KMESH_PROBE_SOCK_ESTABLISHED)
			emit(skops, st, KMESH_PROBE_EV_CLOSE);
		else if (skops->args[0] == BPF_TCP_SYN_SENT)
			emit(skops, st, KMESH_PROBE_EV_FAILED);
		/* one close per socket even if the state machine revisits CLOSE */
		bpf_sk_storage_delete(&kmesh_probe_socks, sk);
		break;
	default:
		break;
	}
	return 1;
}
