/** An in-memory stand-in for the data-path maps, for unit tests of the reconciler: hash semantics and faults. */

import type { ReconcilerMaps } from '../../src/controller/reconciler.js';
import { BPF_NOEXIST } from '../../src/runtime/bpf-map.js';
import { BpfError } from '../../src/runtime/errors.js';
import type { MapAccess } from '../../src/runtime/maps/datapath-maps.js';
import {
  CONFIG_SLOTS,
  MAX_CLUSTERS,
  MAX_ENDPOINTS,
  MAX_LB_TABLE_CHUNKS,
  MAX_LISTENERS,
} from '../../src/runtime/maps/layouts.js';

const EEXIST = 17;
const EIO = 5;

/** Counts every write (update, delete) across a set of maps; the `failAt`-th one fails with EIO. */
export class WriteFaults {
  writes = 0;
  failAt = Number.POSITIVE_INFINITY;

  write(operation: string): void {
    this.writes++;
    if (this.writes === this.failAt) throw new BpfError(operation, EIO);
  }
}

export class MemoryMap implements MapAccess {
  readonly entriesByKey = new Map<string, Buffer>();

  constructor(
    readonly name: string,
    readonly maxEntries: number,
    private readonly faults: WriteFaults,
  ) {}

  update(key: Buffer, value: Buffer, flags = 0): void {
    this.faults.write(`update ${this.name}`);
    const hex = key.toString('hex');
    if (flags === BPF_NOEXIST && this.entriesByKey.has(hex)) throw new BpfError(`update ${this.name}`, EEXIST);
    this.entriesByKey.set(hex, Buffer.from(value));
  }

  /** One write per entry, as a kernel without batch updates does them (a fault stops the batch part-way). */
  updateBatch(keys: Buffer, values: Buffer, count: number): void {
    const k = keys.length / count;
    const v = values.length / count;
    for (let i = 0; i < count; i++) this.update(keys.subarray(i * k, (i + 1) * k), values.subarray(i * v, (i + 1) * v));
  }

  lookup(key: Buffer): Buffer | null {
    return this.entriesByKey.get(key.toString('hex')) ?? null;
  }

  delete(key: Buffer): boolean {
    this.faults.write(`delete ${this.name}`);
    return this.entriesByKey.delete(key.toString('hex'));
  }

  entries(): Array<[Buffer, Buffer]> {
    return [...this.entriesByKey].map(([k, v]) => [Buffer.from(k, 'hex'), v]);
  }
}

export function memoryMaps(faults = new WriteFaults()): ReconcilerMaps & Record<keyof ReconcilerMaps, MemoryMap> {
  return {
    listeners: new MemoryMap('kmesh_listeners', MAX_LISTENERS * CONFIG_SLOTS, faults),
    clusters: new MemoryMap('kmesh_clusters', MAX_CLUSTERS * CONFIG_SLOTS, faults),
    endpoints: new MemoryMap('kmesh_endpoints', MAX_ENDPOINTS, faults),
    roundRobin: new MemoryMap('kmesh_rr', MAX_CLUSTERS, faults),
    activeSlot: new MemoryMap('kmesh_active_slot', 1, faults),
    clusterPolicy: new MemoryMap('kmesh_cl_policy', MAX_CLUSTERS, faults),
    clusterState: new MemoryMap('kmesh_cl_state', MAX_CLUSTERS, faults),
    endpointState: new MemoryMap('kmesh_ep_state', MAX_ENDPOINTS, faults),
    levels: new MemoryMap('kmesh_levels', MAX_CLUSTERS, faults),
    lbTable: new MemoryMap('kmesh_lb_table', MAX_LB_TABLE_CHUNKS, faults),
    endpointOrigin: new MemoryMap('kmesh_ep_origin', MAX_ENDPOINTS, faults),
    l4Mode: new MemoryMap('kmesh_l4_mode', 1, faults),
  };
}
