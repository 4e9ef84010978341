import type { BpfMap } from '../bpf-map.js';
import type { BpfObject } from '../bpf-object.js';

/** The maps the daemon writes for the L4 programs, by role. */
export interface DatapathMaps {
  listeners: BpfMap;
  clusters: BpfMap;
  endpoints: BpfMap;
  roundRobin: BpfMap;
}

export function datapathMaps(obj: BpfObject): DatapathMaps {
  return {
    listeners: obj.map('kmesh_listeners'),
    clusters: obj.map('kmesh_clusters'),
    endpoints: obj.map('kmesh_endpoints'),
    roundRobin: obj.map('kmesh_rr'),
  };
}
