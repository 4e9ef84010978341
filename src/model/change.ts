/**
 * One config source's change, resource by resource: what is named here is replaced (or added) whole or removed;
 * everything else stays as it is. The xDS client hands these to the daemon so that the cost of an apply follows
 * the size of the change, not the size of the mesh.
 */
import type { Cluster, Listener } from './types.js';

export interface ModelChange {
  upsertClusters: Cluster[];
  removeClusters: string[];
  upsertListeners: Listener[];
  removeListeners: string[];
}

export function emptyChange(): ModelChange {
  return { upsertClusters: [], removeClusters: [], upsertListeners: [], removeListeners: [] };
}
