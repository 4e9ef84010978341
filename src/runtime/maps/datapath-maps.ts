import type { BpfMap } from '../bpf-map.js';
import type { BpfObject } from '../bpf-object.js';

/** The maps the L4 programs read, by role. */
export interface DatapathMaps {
  listeners: BpfMap;
  clusters: BpfMap;
  endpoints: BpfMap;
  roundRobin: BpfMap;
  sockOrigin: BpfMap;
}

export function datapathMaps(obj: BpfObject): DatapathMaps {
  return {
    listeners: obj.map('kmesh_listeners'),
    clusters: obj.map('kmesh_clusters'),
    endpoints: obj.map('kmesh_endpoints'),
    roundRobin: obj.map('kmesh_rr'),
    sockOrigin: obj.map('kmesh_sock_origin'),
  };
}
