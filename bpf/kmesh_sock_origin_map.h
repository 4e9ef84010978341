/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket-origin map, defined once for every object that uses it: the loader pins
 * maps by name in one directory, so identical definitions share one live instance.
 * The L4 programs write it at connect time; kmesh-probe reads it at close.
 */
#ifndef KMESH_SOCK_ORIGIN_MAP_H
#define KMESH_SOCK_ORIGIN_MAP_H

#include <bpf/bpf_helpers.h>
#include "kmesh_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KMESH_MAX_TRACKED_SOCKETS);
	__type(key, __u64);
	__type(value, struct kmesh_sock_origin);
} kmesh_sock_origin SEC(".maps");

#endif /* KMESH_SOCK_ORIGIN_MAP_H */
