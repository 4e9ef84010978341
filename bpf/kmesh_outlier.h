/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Outlier detection's bookkeeping, included by the L4 object (connect failures, in sockops)
 * and the L7 object (5xx responses, in the upstream verdict): the per-cluster policy and
 * state maps (one live instance: the loader pins maps by name) and the one rule that counts
 * a failure or a success and ejects. `consecutive_failures` failures in a row eject the
 * endpoint for base_ejection_time x times ejected (capped), unless max_ejection_percent of
 * the cluster is ejected already.
 */
#ifndef KMESH_OUTLIER_H
#define KMESH_OUTLIER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "kmesh_maps.h"
#include "kmesh_lb_maps.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, __u32);
	__type(value, struct kmesh_cluster_policy);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_cl_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KMESH_MAX_CLUSTERS);
	__type(key, __u32);
	__type(value, struct kmesh_cluster_state);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} kmesh_cl_state SEC(".maps");

/* Takes one of the cluster's ejection slots if the cap allows another ejection now. Global, so the
 * verifier checks its loop once (scalar arguments: see kmesh_pick_in_level). */
__attribute__((noinline)) int kmesh_take_ejection(__u32 cluster_id, __u32 max_ejection_percent, __u32 level,
						   __u64 until, __u64 now)
{
	struct kmesh_cluster_state *cs = bpf_map_lookup_elem(&kmesh_cl_state, &cluster_id);
	struct kmesh_cluster_value *cv = lookup_cluster(cluster_id, active_slot());
	__u32 allowed, ejected = 0;
	int i, free = -1, taken = 0;

	if (!cs || !cv)
		return 0;
	/* Envoy ejects at least one endpoint whatever the percentage */
	allowed = cv->endpoint_count * max_ejection_percent / 100;
	if (allowed < 1)
		allowed = 1;
	bpf_spin_lock(&cs->lock);
	for (i = 0; i < KMESH_MAX_EJECTED; i++) {
		if (cs->ejected[i].until_ns > now)
			ejected++;
		else if (free < 0)
			free = i;
	}
	if (ejected < allowed && free >= 0 && free < KMESH_MAX_EJECTED) {
		cs->ejected[free].until_ns = until;
		cs->ejected[free].level = level;
		cs->ejections_total++;
		taken = 1;
	} else {
		cs->ejections_refused++;
	}
	bpf_spin_unlock(&cs->lock);
	return taken;
}

static __always_inline void record_failure(__u32 cluster_id, struct kmesh_ep_state *st, int timed_out)
{
	struct kmesh_cluster_policy *pol = bpf_map_lookup_elem(&kmesh_cl_policy, &cluster_id);
	__u64 now = bpf_ktime_get_ns(), duration;
	__u32 level, times;
	int eject = 0;

	bpf_spin_lock(&st->lock);
	st->failures_total++;
	if (timed_out)
		st->connect_timeouts++;
	st->consecutive_failures++;
	if (pol && pol->consecutive_failures && st->consecutive_failures >= pol->consecutive_failures &&
	    st->ejected_until_ns <= now) {
		st->consecutive_failures = 0;
		eject = 1;
	}
	level = st->level;
	times = st->times_ejected;
	bpf_spin_unlock(&st->lock);
	if (!eject || !pol)
		return;
	duration = pol->base_ejection_ns * (times + 1);
	if (duration > pol->max_ejection_ns)
		duration = pol->max_ejection_ns;
	if (!kmesh_take_ejection(cluster_id, pol->max_ejection_percent, level, now + duration, now))
		return;
	bpf_spin_lock(&st->lock);
	st->ejected_until_ns = now + duration;
	st->times_ejected++;
	st->ejections_total++;
	bpf_spin_unlock(&st->lock);
}

static __always_inline void record_success(__u32 cluster_id, struct kmesh_ep_state *st)
{
	struct kmesh_cluster_policy *pol;
	__u64 now;

	if (st->consecutive_failures == 0 && st->times_ejected == 0)
		return;
	pol = bpf_map_lookup_elem(&kmesh_cl_policy, &cluster_id);
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&st->lock);
	st->consecutive_failures = 0;
	/* the ejection multiplier starts over after an ejection-free interval per time ejected */
	if (pol && st->times_ejected && now > st->ejected_until_ns + pol->interval_ns * st->times_ejected)
		st->times_ejected = 0;
	bpf_spin_unlock(&st->lock);
}

#endif /* KMESH_OUTLIER_H */
