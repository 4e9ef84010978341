// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * kmesh-probe: connection counters (and access-log records) for registered cgroups.
 *
 * A sock_ops program attached to each registered cgroup. For every active TCP
 * connection it asks the kernel for state-change callbacks at connect(), counts the
 * connection as opened when it is established and as closed (or failed, when it
 * never left SYN_SENT) with its byte totals when it reaches TCP_CLOSE. Counting
 * happens here, in a per-CPU hash keyed by what decides the metric labels (the
 * registered cgroup and the L4 steering decision from kmesh_sock_origin, or the peer
 * when not steered): user space reads it at scrape time and does no work per
 * connection. Nothing runs per packet: only the TCP_CONNECT, ACTIVE_ESTABLISHED and
 * STATE callbacks do work.
 *
 * While the access log is on (KMESH_PROBE_CG_ACCESS_LOG, set per registered cgroup by
 * user space), each finished connection also goes into a ring buffer as one record
 * with its duration, RTT and retransmits, and a small socket-local storage holds the
 * connect time, a copy of the origin taken at connect time and which program owns
 * the socket.
 *
 * Memory is bounded: the counter map has a fixed number of keys (further keys are
 * counted in kmesh_probe_conns_overflow, so totals stay exact), socket-local storage is
 * freed with the socket, the ring buffer has a fixed size and a full ring is counted
 * in kmesh_probe_drops, never waited on.
 */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "kmesh_maps.h"
#include "kmesh_probe.h"
/* The origin: written by the L4 data path when it steers a connect(); read here. */
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

/*
 * skops->reply of one sock_ops invocation is shared by every program the kernel runs
 * for it, the innermost cgroup's first, and the callbacks counted here ignore it. A
 * registration nested inside another marks a connection event it counted, so that the
 * enclosing registration's run of this program leaves it alone: the innermost
 * registration owns the connection, as it does through the socket state while the
 * access log is on.
 */
#define KMESH_PROBE_REPLY_COUNTED 0x6b6d7368 /* "kmsh" */

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

/* Allocated on first use of a key: memory follows the keys in use, not the bound. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KMESH_PROBE_MAX_CONN_KEYS);
	__type(key, struct kmesh_probe_conn_key);
	__type(value, struct kmesh_probe_conn_counts);
} kmesh_probe_conns SEC(".maps");

/* Connections of keys that did not fit into kmesh_probe_conns. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kmesh_probe_conn_counts);
} kmesh_probe_conns_overflow SEC(".maps");

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

/* Per-CPU values, atomic anyway: a softirq run can interrupt a process-context run on one CPU. */
static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&kmesh_probe_drops, &zero);

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

static __always_inline struct kmesh_sock_origin *origin_of(struct bpf_sock_ops *skops, struct bpf_sock *sk)
{
	return kmesh_origin_of(bpf_get_socket_cookie(skops), sk);
}

/* The socket's timing state, NULL if it has none; `create` makes it on first sight or
 * starts it over on a new connect() (a socket may connect again after a failed attempt). */
static __always_inline struct kmesh_probe_sock *sock_state(struct bpf_sock_ops *skops, __u64 cg, int create)
{
	struct bpf_sock *sk = skops->sk;
	struct kmesh_probe_sock *st;
	struct kmesh_sock_origin *origin;

	if (!sk)
		return 0;
	if (!create)
		return bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, 0);
	st = bpf_sk_storage_get(&kmesh_probe_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	/* another registered cgroup's program owns it (nested registrations: the innermost,
	 * which runs first); its start_ns is set, a just-created one's is zero */
	if (!st || (st->start_ns && st->cgroup_id != cg))
		return st;
	st->start_ns = bpf_ktime_get_ns();
	st->cgroup_id = cg;
	st->flags = 0;
	origin = origin_of(skops, sk);
	if (origin) {
		__builtin_memcpy(&st->origin, origin, sizeof(st->origin));
		st->flags |= KMESH_PROBE_SOCK_STEERED;
	}
	return st;
}

/* The socket's peer as 16 bytes (IPv4 as ::ffff:a.b.c.d); returns KMESH_PROBE_F_IPV6 or 0. */
static __always_inline __u8 read_remote(const struct bpf_sock_ops *skops, __u8 *remote)
{
	__u32 ip6[4] = { CTX_LOAD_U32(skops->remote_ip6[0]), CTX_LOAD_U32(skops->remote_ip6[1]),
			 CTX_LOAD_U32(skops->remote_ip6[2]), CTX_LOAD_U32(skops->remote_ip6[3]) };
	__u32 ip4 = CTX_LOAD_U32(skops->remote_ip4);
	__u32 *r = (__u32 *)remote;

	if (skops->family == AF_INET6) {
		r[0] = ip6[0];
		r[1] = ip6[1];
		r[2] = ip6[2];
		r[3] = ip6[3];
		return KMESH_PROBE_F_IPV6;
	}
	r[0] = 0;
	r[1] = 0;
	r[2] = bpf_htonl(0x0000ffff);
	r[3] = ip4;
	return 0;
}

/* This connection's counters: its key's, or the overflow slot when the map is full. */
static __always_inline struct kmesh_probe_conn_counts *counts_of(const struct bpf_sock_ops *skops, __u64 cg,
								 const struct kmesh_sock_origin *origin)
{
	struct kmesh_probe_conn_counts zero_counts = {};
	struct kmesh_probe_conn_key key = {};
	struct kmesh_probe_conn_counts *c;
	__u32 zero = 0;

	key.cgroup_id = cg;
	if (origin) {
		__builtin_memcpy(&key.origin, origin, sizeof(key.origin));
		key.flags = KMESH_PROBE_F_STEERED;
	} else {
		key.flags = read_remote(skops, key.remote);
		key.remote_port = (__u16)bpf_ntohl(skops->remote_port);
	}
	c = bpf_map_lookup_elem(&kmesh_probe_conns, &key);
	if (c)
		return c;
	/* BPF_NOEXIST: another CPU may have just added it, then the lookup finds theirs */
	bpf_map_update_elem(&kmesh_probe_conns, &key, &zero_counts, BPF_NOEXIST);
	c = bpf_map_lookup_elem(&kmesh_probe_conns, &key);
	if (c)
		return c;
	return bpf_map_lookup_elem(&kmesh_probe_conns_overflow, &zero);
}

static __always_inline void count_open(const struct bpf_sock_ops *skops, __u64 cg,
				       const struct kmesh_sock_origin *origin)
{
	struct kmesh_probe_conn_counts *c = counts_of(skops, cg, origin);

	if (c)
		__sync_fetch_and_add(&c->opened, 1);
}

/* What a finished connection adds to its counters (and its access-log record). */
struct conn_totals {
	__u64 sent;
	__u64 received;
	__u32 srtt_us;
	__u32 retransmits;
};

/*
 * Totals of a connection reaching TCP_CLOSE. Payload bytes: bytes_acked counts sequence space,
 * so it includes our SYN and, once the peer acknowledged it, our FIN: drop the SYN
 * when it was established, and the FIN when it was sent (a FIN_* / CLOSING / LAST_ACK
 * state) and nothing is outstanding (snd_una == snd_nxt). bytes_received likewise
 * counts the peer's FIN. (An application's shutdown(SHUT_RD) also sets RCV_SHUTDOWN;
 * such a socket is reported one received byte short.)
 */
static __always_inline struct conn_totals totals_at_close(struct bpf_sock_ops *skops, struct bpf_sock *sk,
							 int established)
{
	/* the sock_ops srtt field holds srtt << 3, as tcp_sock does */
	struct conn_totals b = { .sent = skops->bytes_acked,
				 .received = skops->bytes_received,
				 .srtt_us = skops->srtt_us >> 3,
				 .retransmits = skops->total_retrans };
	__u32 old = skops->args[0];
	struct tcp_sock *tp;
	__u64 ctl = 1;

	if (!established)
		return b;
	if ((old == BPF_TCP_FIN_WAIT1 || old == BPF_TCP_FIN_WAIT2 || old == BPF_TCP_CLOSING ||
	     old == BPF_TCP_LAST_ACK) &&
	    skops->snd_una == skops->snd_nxt)
		ctl += 1;
	b.sent = b.sent > ctl ? b.sent - ctl : 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (b.received && tp && (((struct sock___kmesh *)tp)->sk_shutdown & RCV_SHUTDOWN))
		b.received -= 1;
	return b;
}

static __always_inline void count_finish(const struct bpf_sock_ops *skops, __u64 cg,
					 const struct kmesh_sock_origin *origin, __u8 type, const struct conn_totals *b)
{
	struct kmesh_probe_conn_counts *c = counts_of(skops, cg, origin);

	if (!c)
		return;
	if (type == KMESH_PROBE_EV_FAILED) {
		__sync_fetch_and_add(&c->failed, 1);
		return;
	}
	__sync_fetch_and_add(&c->closed, 1);
	__sync_fetch_and_add(&c->bytes_sent, b->sent);
	__sync_fetch_and_add(&c->bytes_received, b->received);
	__sync_fetch_and_add(&c->retransmits, b->retransmits);
	__sync_fetch_and_add(&c->srtt_us_sum, b->srtt_us);
}

/* `origin` may be NULL (not steered); the caller sets cgroup_id and duration_ns. */
static __always_inline void fill(struct kmesh_probe_event *ev, struct bpf_sock_ops *skops, __u8 type,
			    const struct kmesh_sock_origin *origin, const struct conn_totals *b)
{
	ev->cookie = bpf_get_socket_cookie(skops);
	ev->bytes_sent = b->sent;
	ev->bytes_received = b->received;
	ev->srtt_us = b->srtt_us;
	ev->total_retrans = b->retransmits;
	ev->type = type;
	ev->pad = 0;
	ev->flags = read_remote(skops, ev->remote);
	if (origin) {
		__builtin_memcpy(&ev->origin, origin, sizeof(ev->origin));
		ev->flags |= KMESH_PROBE_F_STEERED;
	} else {
		__builtin_memset(&ev->origin, 0, sizeof(ev->origin));
	}
	ev->remote_port = (__u16)bpf_ntohl(skops->remote_port);
	ev->local_port = (__u16)skops->local_port;
}

/* One access-log record; `start_ns` 0 = not timed (the log was off at connect time). */
static __always_inline void emit(struct bpf_sock_ops *skops, __u8 type, __u64 cg, __u64 start_ns,
				 const struct kmesh_sock_origin *origin, const struct conn_totals *b)
{
	struct kmesh_probe_event *ev;

	ev = bpf_ringbuf_reserve(&kmesh_probe_events, sizeof(*ev), 0);
	if (!ev) {
		count_drop();
		return;
	}
	fill(ev, skops, type, origin, b);
	ev->cgroup_id = cg;
	ev->duration_ns = start_ns ? bpf_ktime_get_ns() - start_ns : 0;
	/* no wakeup: user space polls on a timer, so skip the irq_work per record */
	bpf_ringbuf_submit(ev, BPF_RB_NO_WAKEUP);
}

/* Counts a finished connection, and queues its access-log record while the log is on. */
static __always_inline void finish(struct bpf_sock_ops *skops, const struct kmesh_probe_cgroup *cg,
				   const struct kmesh_sock_origin *origin, __u8 type, __u64 start_ns,
				   const struct conn_totals *b)
{
	count_finish(skops, cg->cgroup_id, origin, type, b);
	if (cg->flags & KMESH_PROBE_CG_ACCESS_LOG)
		emit(skops, type, cg->cgroup_id, start_ns, origin, b);
}

/* Counts (and logs) a socket reaching TCP_CLOSE, once. */
static __always_inline void report_close(struct bpf_sock_ops *skops, struct bpf_sock *sk,
					 const struct kmesh_probe_cgroup *cg)
{
	/* state exists if the access log was on at connect/establish time, whatever it is now */
	struct kmesh_probe_sock *st = sock_state(skops, cg->cgroup_id, 0);
	int established = skops->args[0] != BPF_TCP_SYN_SENT;
	__u64 start_ns = 0;
	struct conn_totals b;
	__u8 type;

	if (st) {
		if (st->cgroup_id != cg->cgroup_id || (st->flags & KMESH_PROBE_SOCK_CLOSED))
			return;
		/* one report per socket even if the state machine revisits CLOSE; the
		 * storage itself goes with the socket (a delete here costs an RCU free) */
		st->flags |= KMESH_PROBE_SOCK_CLOSED;
		established = st->flags & KMESH_PROBE_SOCK_ESTABLISHED;
		if (!established && skops->args[0] != BPF_TCP_SYN_SENT)
			return;
		start_ns = st->start_ns;
	}
	type = established ? KMESH_PROBE_EV_CLOSE : KMESH_PROBE_EV_FAILED;
	b = totals_at_close(skops, sk, established);
	/* one call per origin, not a conditional pointer: clang would make the latter a
	 * mask on the pointer, which the verifier rejects */
	if (!st)
		finish(skops, cg, kmesh_closed_origin_of(bpf_get_socket_cookie(skops), skops->snd_nxt, sk), type, 0,
		       &b);
	else if (st->flags & KMESH_PROBE_SOCK_STEERED)
		finish(skops, cg, &st->origin, type, start_ns, &b);
	else
		finish(skops, cg, 0, type, start_ns, &b);
}

/* Counts an established active connection, once. */
static __always_inline void report_open(struct bpf_sock_ops *skops, const struct kmesh_probe_cgroup *cg)
{
	int logging = cg->flags & KMESH_PROBE_CG_ACCESS_LOG;
	/* with the log on, also covers connects that started before the program was attached */
	struct kmesh_probe_sock *st = sock_state(skops, cg->cgroup_id, logging);

	if (!st) {
		if (skops->sk)
			count_open(skops, cg->cgroup_id, origin_of(skops, skops->sk));
		return;
	}
	if (st->cgroup_id != cg->cgroup_id || (st->flags & KMESH_PROBE_SOCK_ESTABLISHED))
		return;
	st->flags |= KMESH_PROBE_SOCK_ESTABLISHED;
	if (st->flags & KMESH_PROBE_SOCK_STEERED)
		count_open(skops, cg->cgroup_id, &st->origin);
	else
		count_open(skops, cg->cgroup_id, 0);
}

SEC("sockops")
int kmesh_probe_sockops(struct bpf_sock_ops *skops)
{
	struct kmesh_probe_cgroup *cg;
	__u32 op = skops->op;
	struct bpf_sock *sk;

	/* most runs are callbacks counted nowhere (TIMEOUT_INIT, RWND_INIT, NEEDS_ECN, ...): out first */
	if (op != BPF_SOCK_OPS_TCP_CONNECT_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;

	switch (op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		/* process context of connect(): ask for state changes (and start the clock) */
		cg = my_cgroup();
		if (cg->flags & KMESH_PROBE_CG_ACCESS_LOG) {
			struct kmesh_probe_sock *st = sock_state(skops, cg->cgroup_id, 1);

			if (st && st->cgroup_id != cg->cgroup_id)
				break;
		}
		want_state_cb(skops);
		break;
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		/* also covers connects that started before the program was attached */
		want_state_cb(skops);
		if (skops->reply == KMESH_PROBE_REPLY_COUNTED)
			break;
		report_open(skops, my_cgroup());
		skops->reply = KMESH_PROBE_REPLY_COUNTED;
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* args[0] = old state, args[1] = new state */
		if (skops->args[1] != BPF_TCP_CLOSE || skops->reply == KMESH_PROBE_REPLY_COUNTED)
			break;
		sk = skops->sk;
		if (sk)
			report_close(skops, sk, my_cgroup());
		skops->reply = KMESH_PROBE_REPLY_COUNTED;
		break;
	default:
		break;
	}
	return 1;
}
