// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kmesh-probe: connection events for registered cgroups.
 *
 * A sock_ops program attached to each registered cgroup. For every active TCP
 * connection it asks the kernel for state-change callbacks at connect() and emits
 * one OPEN record when it is established and one CLOSE (or one FAILED, when it
 * never left SYN_SENT) record when it reaches TCP_CLOSE, into a ring buffer. The
 * records carry the L4 steering decision from kmesh_sock_origin (written by the
 * connect4/6 program) and the byte/RTT/retransmit totals the tcp_sock keeps anyway.
 * Nothing runs per packet: only the TCP_CONNECT, ACTIVE_ESTABLISHED and STATE
 * callbacks do work.
 *
 * Two modes per registered cgroup (KMESH_PROBE_CG_TIMING, set by user space while
 * the access log is on): without it the program keeps no per-socket state at all;
 * with it a small socket-local storage holds the connect time (for the duration),
 * a copy of the origin taken at connect time, and which program owns the socket.
 *
 * Memory is bounded: socket-local storage is freed with the socket, the ring buffer
 * has a fixed size and a full ring is counted in kmesh_probe_drops, never waited on.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kmesh_maps.h"
#include "kmesh_probe.h"
/* kmesh_sock_origin: written by the L4 data path at connect; read here, and deleted at close. */
#include "kmesh_sock_origin_map.h"

#define AF_INET 2
#define AF_INET6 10
#define RCV_SHUTDOWN 1

/*
 * The one kernel-internal field the probe reads, relocated by libbpf (CO-RE) against
 * the running kernel's BTF: set by tcp_fin() when the peer's FIN arrived. The
 * ___kmesh flavour matches the kernel's struct sock; sk sits at offset 0 of tcp_sock.
 */
struct sock___kmesh {
	unsigned char sk_shutdown;
} __attribute__((preserve_access_index));

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

	/* per-CPU slot; atomic anyway: programs can preempt each other on one CPU (RT) */
	if (n)
		__sync_fetch_and_add(n, 1);
}

/* Keep other sock_ops programs' callback flags: the helper sets, it does not OR. */
static __always_inline void want_state_cb(struct bpf_sock_ops *skops)
{
	__u32 flags = skops->bpf_sock_ops_cb_flags;

	if (!(flags & BPF_SOCK_OPS_STATE_CB_FLAG))
		bpf_sock_ops_cb_flags_set(skops, flags | BPF_SOCK_OPS_STATE_CB_FLAG);
}

static __always_inline struct kmesh_probe_cgroup *my_cgroup(void)
{
	return bpf_get_local_storage(&kmesh_probe_cgroup, 0);
}

/* Create the socket's timing state on first sight, or start it over on a new connect()
 * (`restart`: a socket may connect again after a failed attempt). Returns NULL when
 * the socket belongs to another registered cgroup's program (nested registrations:
 * the innermost one, which runs first, owns it) or storage is exhausted. */
static __always_inline struct kmesh_probe_sock *track(struct bpf_sock_ops *skops, __u64 cg, int restart)
{
	struct bpf_sock *sk = skops->sk;
	struct kmesh_probe_sock *st;
	struct kmesh_sock_origin *origin;
	__u64 cookie;

	if (!sk)
		return 0;
	/* one call finds or creates; a zero start_ns means "created just now" */
	st = bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	if (st->start_ns && st->cgroup_id != cg)
		return 0;
	if (st->start_ns && !restart)
		return st;
	st->start_ns = bpf_ktime_get_ns();
	st->cgroup_id = cg;
	st->flags = 0;
	cookie = bpf_get_socket_cookie(skops);
	origin = bpf_map_lookup_elem(&kmesh_sock_origin, &cookie);
	if (origin) {
		__builtin_memcpy(&st->origin, origin, sizeof(st->origin));
		st->flags |= KMESH_PROBE_SOCK_STEERED;
	}
	return st;
}

/*
 * Not inlined on purpose: as a BPF subprogram it puts struct kmesh_probe_event into
 * the object's BTF (through its parameter), where test/unit/probe-btf.test.ts checks
 * the TypeScript codec against it. One call per connection event costs nothing.
 * `origin` may be NULL (not steered). (BPF calls take at most five arguments: the
 * caller sets duration_ns.)
 */
static __noinline void fill(struct kmesh_probe_event *ev, struct bpf_sock_ops *skops, __u8 type, __u64 cg,
			    const struct kmesh_sock_origin *origin)
{
	__u32 *r = (__u32 *)ev->remote;
	__u64 acked = skops->bytes_acked;
	__u64 received = skops->bytes_received;
	__u64 ctl = 0;
	__u64 rctl = 0;

	/*
	 * bytes_acked counts sequence space, so it includes our SYN and, once the peer
	 * acknowledged it, our FIN. Report payload only: drop the SYN once established,
	 * and the FIN when it was sent (a FIN_* / CLOSING / LAST_ACK state) and nothing
	 * is outstanding (snd_una == snd_nxt).
	 */
	if (type != KMESH_PROBE_EV_FAILED)
		ctl = 1;
	if (type == KMESH_PROBE_EV_CLOSE) {
		__u32 old = skops->args[0];
		struct bpf_sock *sk = skops->sk;
		struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : 0;

		/* bytes_received likewise counts the peer's FIN. (An application's
		 * shutdown(SHUT_RD) also sets RCV_SHUTDOWN; such a socket is reported one
		 * received byte short.) */
		if (tp && (((struct sock___kmesh *)tp)->sk_shutdown & RCV_SHUTDOWN))
			rctl = 1;
		if ((old == BPF_TCP_FIN_WAIT1 || old == BPF_TCP_FIN_WAIT2 || old == BPF_TCP_CLOSING ||
		     old == BPF_TCP_LAST_ACK) &&
		    skops->snd_una == skops->snd_nxt)
			ctl += 1;
	}

	ev->cookie = bpf_get_socket_cookie(skops);
	ev->cgroup_id = cg;
	ev->bytes_sent = acked > ctl ? acked - ctl : 0;
	ev->bytes_received = received > rctl ? received - rctl : 0;
	/* the sock_ops field holds srtt << 3, as tcp_sock does */
	ev->srtt_us = skops->srtt_us >> 3;
	ev->total_retrans = skops->total_retrans;
	ev->type = type;
	ev->flags = 0;
	ev->pad = 0;
	if (origin) {
		__builtin_memcpy(&ev->origin, origin, sizeof(ev->origin));
		ev->flags |= KMESH_PROBE_F_STEERED;
	} else {
		__builtin_memset(&ev->origin, 0, sizeof(ev->origin));
	}

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

static __always_inline void emit(struct bpf_sock_ops *skops, __u8 type, __u64 cg, __u64 start_ns,
				 const struct kmesh_sock_origin *origin)
{
	struct kmesh_probe_event *ev;

	ev = bpf_ringbuf_reserve(&kmesh_probe_events, sizeof(*ev), 0);
	if (!ev) {
		count_drop();
		return;
	}
	fill(ev, skops, type, cg, origin);
	ev->duration_ns = start_ns ? bpf_ktime_get_ns() - start_ns : 0;
	/* no wakeup: user space polls on a timer, so skip the irq_work per record */
	bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
}

/* With timing state: the state says what to emit, once. */
static __always_inline void emit_tracked(struct bpf_sock_ops *skops, struct kmesh_probe_sock *st, __u8 type)
{
	/* two calls, not a conditional pointer: clang would make the latter a mask on the
	 * pointer, which the verifier rejects */
	if (st->flags & KMESH_PROBE_SOCK_STEERED)
		emit(skops, type, st->cgroup_id, st->start_ns, &st->origin);
	else
		emit(skops, type, st->cgroup_id, st->start_ns, 0);
}

/* Without: the origin is looked up now; the L4 path keeps it for the socket's life. */
static __always_inline void emit_untracked(struct bpf_sock_ops *skops, __u8 type, __u64 cg)
{
	__u64 cookie = bpf_get_socket_cookie(skops);

	emit(skops, type, cg, 0, bpf_map_lookup_elem(&kmesh_sock_origin, &cookie));
}

/* One close (or failed-connect) record for a socket reaching TCP_CLOSE. */
static __always_inline void report_close(struct bpf_sock_ops *skops, struct bpf_sock *sk,
					 const struct kmesh_probe_cgroup *cg)
{
	/* state exists if timing was on at connect/establish time, whatever it is now */
	struct kmesh_probe_sock *st = bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, 0);

	if (st) {
		if (st->cgroup_id != cg->cgroup_id || (st->flags & KMESH_PROBE_SOCK_CLOSED))
			return;
		/* one record per socket even if the state machine revisits CLOSE; the
		 * storage itself goes with the socket (a delete here costs an RCU free) */
		st->flags |= KMESH_PROBE_SOCK_CLOSED;
		if (st->flags & KMESH_PROBE_SOCK_ESTABLISHED)
			emit_tracked(skops, st, KMESH_PROBE_EV_CLOSE);
		else if (skops->args[0] == BPF_TCP_SYN_SENT)
			emit_tracked(skops, st, KMESH_PROBE_EV_FAILED);
		return;
	}
	/* untracked: CLOSE is reached once per connection; SYN_SENT before it = never established */
	emit_untracked(skops, skops->args[0] == BPF_TCP_SYN_SENT ? KMESH_PROBE_EV_FAILED : KMESH_PROBE_EV_CLOSE,
		       cg->cgroup_id);
}

SEC("sockops")
int kmesh_probe_sockops(struct bpf_sock_ops *skops)
{
	struct kmesh_probe_cgroup *cg;
	struct kmesh_probe_sock *st;
	struct bpf_sock *sk;
	__u64 cookie;

	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;

	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* process context of connect(): ask for state changes (and start the clock) */
		cg = my_cgroup();
		if (cg->flags & KMESH_PROBE_CG_TIMING) {
			if (!track(skops, cg->cgroup_id, 1))
				break;
		}
		want_state_cb(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		cg = my_cgroup();
		/* also covers connects that started before the program was attached */
		want_state_cb(skops);
		if (!(cg->flags & KMESH_PROBE_CG_TIMING)) {
			emit_untracked(skops, KMESH_PROBE_EV_OPEN, cg->cgroup_id);
			break;
		}
		st = track(skops, cg->cgroup_id, 0);
		if (!st || (st->flags & KMESH_PROBE_SOCK_ESTABLISHED))
			break;
		st->flags |= KMESH_PROBE_SOCK_ESTABLISHED;
		emit_tracked(skops, st, KMESH_PROBE_EV_OPEN);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] = old state, args[1] = new state */
		if (skops->args[1] != BPF_TCP_CLOSE)
			break;
		sk = skops->sk;
		if (!sk)
			break;
		report_close(skops, sk, my_cgroup());
		/* The connection is over: its origin entry goes now instead of crowding the LRU
		 * (a full LRU makes every connect evict, and evicts long-lived sockets' entries). */
		cookie = bpf_get_socket_cookie(skops);
		bpf_map_delete_elem(&kmesh_sock_origin, &cookie);
		break;
	default:
		break;
	}
	return 1;
}
