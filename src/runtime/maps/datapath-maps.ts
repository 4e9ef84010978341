import type { BpfMap } from '../bpf-map.js';
import type { BpfObject } from '../bpf-object.js';

/** What writing and reading a map takes (an in-memory stand-in in unit tests). */
export type MapAccess = Pick<BpfMap, 'name' | 'maxEntries' | 'update' | 'lookup' | 'delete' | 'entries'>;

/** The maps the daemon writes for the L4 programs, by role. */
export interface DatapathMaps {
  listeners: BpfMap;
  clusters: BpfMap;
  endpoints: BpfMap;
  roundRobin: BpfMap;
  /** Which slot of listeners/clusters is the live config. */
  activeSlot: BpfMap;
  /** Resilience: per-cluster settings and counters, per-endpoint state, per-generation levels and tables. */
  clusterPolicy: BpfMap;
  clusterState: BpfMap;
  endpointState: BpfMap;
  levels: BpfMap;
  lbTable: BpfMap;
}

export function datapathMaps(obj: BpfObject): DatapathMaps {
  return {
    listeners: obj.map('kmesh_listeners'),
    clusters: obj.map('kmesh_clusters'),
    endpoints: obj.map('kmesh_endpoints'),
    roundRobin: obj.map('kmesh_rr'),
    activeSlot: obj.map('kmesh_active_slot'),
    clusterPolicy: obj.map('kmesh_cl_policy'),
    clusterState: obj.map('kmesh_cl_state'),
    endpointState: obj.map('kmesh_ep_state'),
    levels: obj.map('kmesh_levels'),
    lbTable: obj.map('kmesh_lb_table'),
  };
}
