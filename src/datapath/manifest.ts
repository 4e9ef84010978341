import type { BpfMapName } from '../abi/kernel.js';

/**
 * Every BPF object the daemon loads, one entry each, in load order. `required`: the
 * daemon refuses to start without it; `optional`: a kernel that lacks what it needs
 * (or a load that fails) switches the family off with the reason, the rest runs on.
 * `maps` names the maps the rest of the daemon uses, by role.
 */
export interface FamilyEntry {
  /** File in the object directory (build/bpf). */
  object: string;
  need: 'required' | 'optional';
  /** What the family does, for the log line that switches it off. */
  what: string;
  /** Role → map name in the object (a name the objects do not define does not compile). */
  maps: Readonly<Record<string, BpfMapName>>;
}

export type Manifest = Readonly<Record<string, FamilyEntry>>;

export const MANIFEST = {
  // first: it creates kmesh_sock_origin, which the later objects share through the pin
  l4: {
    object: 'kmesh_l4.bpf.o',
    need: 'required',
    what: 'L4 connect-time steering',
    maps: {
      listeners: 'kmesh_listeners',
      clusters: 'kmesh_clusters',
      endpoints: 'kmesh_endpoints',
      roundRobin: 'kmesh_rr',
      activeSlot: 'kmesh_active_slot',
      clusterPolicy: 'kmesh_cl_policy',
      clusterState: 'kmesh_cl_state',
      endpointState: 'kmesh_ep_state',
      levels: 'kmesh_levels',
      lbTable: 'kmesh_lb_table',
      endpointOrigin: 'kmesh_ep_origin',
      l4Mode: 'kmesh_l4_mode',
    },
  },
  probe: {
    object: 'kmesh_probe.bpf.o',
    need: 'optional',
    what: 'kmesh-probe (connection metrics and access log)',
    maps: {
      events: 'kmesh_probe_events',
      drops: 'kmesh_probe_drops',
      cgroups: 'kmesh_probe_cgroup',
      conns: 'kmesh_probe_conns',
      connsOverflow: 'kmesh_probe_conns_overflow',
    },
  },
} as const satisfies Manifest;
