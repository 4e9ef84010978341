/**
 * TOML and xDS side by side. TOML is the operator's local word and wins: an xDS
 * cluster or listener with the same name, or an xDS listener on an address:port the
 * TOML already binds, is left out (and reported), never merged field by field.
 */
import type { MeshModel } from './types.js';
import { addressKey, l4Protocol } from './validate.js';

export interface MergeResult {
  model: MeshModel;
  /** Human-readable notes on what xDS sent that TOML shadows. */
  shadowed: string[];
}

export function mergeModels(toml: MeshModel, xds: MeshModel): MergeResult {
  const shadowed: string[] = [];
  const clusterNames = new Set(toml.clusters.map((c) => c.name));
  const listenerNames = new Set(toml.listeners.map((l) => l.name));
  const bound = new Set(toml.listeners.map((l) => `${addressKey(l.address)}|${l.port}|${l4Protocol(l.protocol)}`));

  const clusters = xds.clusters.filter((c) => {
    if (!clusterNames.has(c.name)) return true;
    shadowed.push(`xDS cluster "${c.name}" is shadowed by the TOML cluster of that name`);
    return false;
  });
  const listeners = xds.listeners.filter((l) => {
    if (listenerNames.has(l.name)) {
      shadowed.push(`xDS listener "${l.name}" is shadowed by the TOML listener of that name`);
      return false;
    }
    if (bound.has(`${addressKey(l.address)}|${l.port}|${l4Protocol(l.protocol)}`)) {
      shadowed.push(
        `xDS listener "${l.name}" on ${l.address}:${l.port} is shadowed by a TOML listener on that address`,
      );
      return false;
    }
    return true;
  });
  return {
    model: { clusters: [...toml.clusters, ...clusters], listeners: [...toml.listeners, ...listeners] },
    shadowed,
  };
}
