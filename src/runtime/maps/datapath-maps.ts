import type { BpfMap } from '../bpf-map.js';

/** What writing and reading a map takes (an in-memory stand-in in unit tests). */
export type MapAccess = Pick<
  BpfMap,
  'name' | 'maxEntries' | 'update' | 'updateBatch' | 'lookup' | 'delete' | 'entries'
>;

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
  /** A TCP endpoint → the origin its steered connections share (src/controller/origin-index.ts). */
  endpointOrigin: BpfMap;
  /** Whether kmesh_l4_sockops is attached (src/controller/l4-sockops.ts). */
  l4Mode: BpfMap;
}
