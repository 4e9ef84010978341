/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The socket-origin map, defined once for every object that uses it: the loader pins
 * maps by name in one directory, so identical definitions share one live instance.
 * The L4 programs write it when they steer a connect(); getpeername and kmesh-probe
 * read it. Socket-local storage: a reader finds it through the socket itself (no hash
 * lookup, and nothing at all for sockets that were not steered), and it goes with the
 * socket, so it needs no capacity and no clean-up.
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

#endif /* KMESH_SOCK_ORIGIN_MAP_H */
