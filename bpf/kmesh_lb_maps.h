/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The live cluster config, its consistent-hash tables and the endpoints' outlier state,
 * included by the L4 object (connect-time picks) and the L7 object (request-time picks):
 * the loader pins maps by name, so the identical definitions here are one live instance.
 * The config and tables are written by the daemon's L4 reconciler only.
 */
#ifndef KMESH_LB_MAPS_H
#define KMESH_LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kmesh_maps.h"

/* HASH, not ARRAY: an update replaces the element whole, so readers never see a torn value. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS * KMESH_CONFIG_SLOTS);
	__type(key, struct kmesh_cluster_key);
	__type(value, struct kmesh_cluster_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_clusters SEC(".maps");

/* Which slot of kmesh_listeners/kmesh_clusters is the live config (0 or 1). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} kmesh_active_slot SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_LB_TABLE_CHUNKS);
	__type(key, struct kmesh_table_key);
	__type(value, struct kmesh_table_chunk);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_lb_table SEC(".maps");

/* Per endpoint of a cluster (outlier ejection, active connections): written by the L4 sockops
 * program, read by every pick, L4 and L7. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_ENDPOINTS);
	__type(key, struct kmesh_ep_state_key);
	__type(value, struct kmesh_ep_state);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_ep_state SEC(".maps");

static __always_inline struct kmesh_ep_state *ep_state_of(__u32 cluster_id, const __u8 *addr, __u16 port)
{
	struct kmesh_ep_state_key key = { .port = port, .cluster_id = cluster_id };

	__builtin_memcpy(key.addr, addr, sizeof(key.addr));
	return bpf_map_lookup_elem(&kmesh_ep_state, &key);
}

/* Read once per connect: the listener and its clusters come from the same config. */
static __always_inline __u8 active_slot(void)
{
	__u32 zero = 0;
	__u32 *slot = bpf_map_lookup_elem(&kmesh_active_slot, &zero);

	return slot && *slot ? 1 : 0;
}

static __always_inline struct kmesh_cluster_value *lookup_cluster(__u32 cluster_id, __u8 slot)
{
	struct kmesh_cluster_key key = { .id = cluster_id, .slot = slot };

	return bpf_map_lookup_elem(&kmesh_clusters, &key);
}

static __always_inline __u64 mix64(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	return h ^ (h >> 33);
}

/*
 * Maglev / ring hash: the level-0 endpoint index (in cv's generation) that the slot of
 * hash h names, or missing when the table has no such chunk.
 */
static __always_inline __u32 lb_table_index(__u32 cluster_id, const struct kmesh_cluster_value *cv, __u32 h,
					    __u32 missing)
{
	__u32 slot = cv->lb_policy == KMESH_LB_MAGLEV ? h % KMESH_MAGLEV_TABLE_SIZE : h >> 16;
	struct kmesh_table_key key = { .cluster_id = cluster_id,
				       .generation = cv->generation,
				       .chunk = slot / KMESH_LB_TABLE_CHUNK };
	struct kmesh_table_chunk *chunk = bpf_map_lookup_elem(&kmesh_lb_table, &key);

	return chunk ? chunk->index[slot % KMESH_LB_TABLE_CHUNK] : missing;
}

#endif /* KMESH_LB_MAPS_H */
