import type { BpfMap } from '../bpf-map.js';

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
}
