/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kmesh-probe: the layouts and constants shared by bpf/kmesh_probe.bpf.c and src/probe/.
 * The TypeScript side is generated from the compiled object's BTF (see kmesh_maps.h).
 *
 * Conventions follow bpf/kmesh_maps.h: addresses are 16 bytes in network byte order
 * (IPv4 as ::ffff:a.b.c.d), ports in host byte order, no implicit padding.
 */
#ifndef KMESH_PROBE_H
#define KMESH_PROBE_H

#include "kmesh_maps.h"

enum kmesh_probe_limits {
	/* Ring buffer size in bytes (power of two, multiple of the page size). Only the access
	 * log uses it: one record of sizeof(struct kmesh_probe_event) + 8 bytes of ring header
	 * (120 bytes) per finished connection, so 1 MiB holds ~8700 connections, ~580 ms of
	 * 15k connections/s while the daemon is not scheduled. */
	KMESH_PROBE_RINGBUF_BYTES = 1024 * 1024,
	/* Distinct connection keys counted in the kernel (kmesh_probe_conns); connections of
	 * further keys are counted in kmesh_probe_conns_overflow. */
	KMESH_PROBE_MAX_CONN_KEYS = 16384,
};

enum kmesh_probe_event_type {
	KMESH_PROBE_EV_CLOSE = 2,  /* established connection reached TCP_CLOSE */
	KMESH_PROBE_EV_FAILED = 3, /* SYN_SENT -> TCP_CLOSE without establishing */
};

/* kmesh_probe_event.flags, kmesh_probe_conn_key.flags */
enum kmesh_probe_conn_flags {
	KMESH_PROBE_F_STEERED = 0x1, /* origin is valid: the L4 data path steered this socket */
	KMESH_PROBE_F_IPV6 = 0x2,    /* remote is a real IPv6 address (else ::ffff:v4) */
};

/*
 * Key of kmesh_probe_conns: everything that decides a connection's metric labels.
 * Steered: origin (VIP, endpoint, cluster) and remote zero. Not steered: origin zero,
 * remote = the peer. Fully zeroed before filling: it is hashed as bytes.
 */
struct kmesh_probe_conn_key {
	__u64 cgroup_id; /* registered cgroup whose program saw the socket */
	struct kmesh_sock_origin origin;
	__u8 remote[16];
	__u16 remote_port;
	__u8 flags; /* KMESH_PROBE_F_* */
	__u8 pad[5];
};

/* Value of kmesh_probe_conns (per CPU) and of kmesh_probe_conns_overflow: cumulative. */
struct kmesh_probe_conn_counts {
	__u64 opened;         /* established */
	__u64 closed;         /* established, then reached TCP_CLOSE */
	__u64 failed;         /* SYN_SENT -> TCP_CLOSE */
	__u64 bytes_sent;     /* payload the peer acknowledged, added at close */
	__u64 bytes_received; /* payload received, added at close */
	__u64 retransmits;    /* segments retransmitted (tcp_sock total_retrans), added at close */
	__u64 srtt_us_sum;    /* smoothed RTT at close, microseconds, summed over closed connections */
};

/* One ring-buffer record per finished connection, while the access log is on. */
struct kmesh_probe_event {
	__u64 cookie;         /* socket cookie: names the connection */
	__u64 cgroup_id;      /* registered cgroup whose program saw the socket (0 = unknown) */
	__u64 duration_ns;    /* connect() to this event; 0 unless timing is on */
	__u64 bytes_sent;     /* payload the peer acknowledged (bytes_acked less SYN/FIN) */
	__u64 bytes_received; /* tcp bytes_received: payload received */
	struct kmesh_sock_origin origin; /* copied at connect time when steered */
	__u8 remote[16];      /* the socket's peer address (the chosen endpoint when steered) */
	__u16 remote_port;
	__u16 local_port;
	__u32 srtt_us;        /* smoothed RTT, microseconds */
	__u32 total_retrans;
	__u8 type;            /* enum kmesh_probe_event_type */
	__u8 flags;           /* KMESH_PROBE_F_* */
	__u16 pad;
};

/* Per-socket state in socket-local storage, kept only while the access log is on (see
 * KMESH_PROBE_CG_ACCESS_LOG): allocating it costs about as much as the rest of the
 * probe together, and only the access log needs what it adds (the duration, the
 * origin copied at connect time, one owner among nested registrations). */
struct kmesh_probe_sock {
	__u64 start_ns;
	__u64 cgroup_id;
	struct kmesh_sock_origin origin;
	__u32 flags; /* KMESH_PROBE_SOCK_* */
	__u32 pad;
};

enum kmesh_probe_sock_flags {
	KMESH_PROBE_SOCK_STEERED = 0x1,
	KMESH_PROBE_SOCK_ESTABLISHED = 0x2,
	KMESH_PROBE_SOCK_CLOSED = 0x4, /* close/failed already reported */
};

/* Value of the per-cgroup storage, written by user space for each attachment (the key
 * carries the cgroup id): lets the program name the registered cgroup without
 * bpf_get_current_cgroup_id(), which is meaningless in sock_ops run from softirq,
 * and carries the per-cgroup switches. Read with one bpf_get_local_storage(). */
struct kmesh_probe_cgroup {
	__u64 cgroup_id;
	__u32 flags; /* KMESH_PROBE_CG_* */
	__u32 pad;
};

enum kmesh_probe_cgroup_flags {
	/* Queue an access-log record per finished connection, with its duration (per-socket storage). */
	KMESH_PROBE_CG_ACCESS_LOG = 0x1,
};

/* See kmesh_maps_exports. */
struct kmesh_probe_exports {
	enum kmesh_probe_limits limits;
	enum kmesh_probe_event_type event_type;
	enum kmesh_probe_conn_flags conn_flags;
	enum kmesh_probe_sock_flags sock_flags;
	enum kmesh_probe_cgroup_flags cgroup_flags;
	/* the ring buffer has no value type: this brings the record's layout into BTF */
	struct kmesh_probe_event event;
};
struct kmesh_probe_exports kmesh_probe_exports KMESH_BTF_EXPORT;

#endif /* KMESH_PROBE_H */
