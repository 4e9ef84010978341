import type { BpfMap } from '../bpf-map.js';
import type { BpfObject } from '../bpf-object.js';

/** The maps the daemon writes for the L4 programs, by role. */
export interface DatapathMaps {
  listeners: BpfMap;
  clusters: BpfMap;
  endpoints: BpfMap;
  roundRobin: BpfMap;
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
    clusterPolicy: obj.map('kmesh_cl_policy'),
    clusterState: obj.map('kmesh_cl_state'),
    endpointState: obj.map('kmesh_ep_state'),
    levels: obj.map('kmesh_levels'),
    lbTable: obj.map('kmesh_lb_table'),
  };
}
