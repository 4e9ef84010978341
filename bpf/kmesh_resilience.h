/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Resilience bookkeeping once per connection. A service registered inside another registered
 * service's cgroup runs the sock_ops program of both attachments for each of its sockets: without
 * this, active connections (least_request, max_connections) and failures would count twice. The
 * first run of a callback claims it in the socket's own storage; later runs see the claim.
 */
#ifndef KMESH_RESILIENCE_H
#define KMESH_RESILIENCE_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kmesh_maps.h"

struct kmesh_res_sock {
	__u32 counted; /* KMESH_CONN_STARTED | KMESH_CONN_ENDED, as in struct kmesh_conn */
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kmesh_res_sock);
} kmesh_res_sock SEC(".maps");

/* True for the first run of `what` (KMESH_CONN_STARTED at connect, KMESH_CONN_ENDED at close) on
 * this socket. Runs of one callback are sequential on one CPU: no lock needed. Called for
 * tracked clusters only, so plain clusters' sockets get no storage. */
static __always_inline int kmesh_res_claim(struct bpf_sock *sk, __u32 what)
{
	struct kmesh_res_sock *st = bpf_sk_storage_get(&kmesh_res_sock, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!st || (st->counted & what))
		return 0;
	st->counted |= what;
	return 1;
}

/* True when this socket's start was counted: only such a connection's end is counted (one opened before
 * the L4 sockops program was attached, or before its cluster had a policy, never was). */
static __always_inline int kmesh_res_started(struct bpf_sock *sk)
{
	struct kmesh_res_sock *st = bpf_sk_storage_get(&kmesh_res_sock, sk, 0, 0);

	return st && (st->counted & KMESH_CONN_STARTED);
}

#endif /* KMESH_RESILIENCE_H */
