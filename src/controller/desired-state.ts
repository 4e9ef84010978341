/**
 * The model as map entries, before any kernel is touched: pure, so the load-balancing
 * tables (cumulative weights, cluster splits) are unit-tested directly.
 */

import { encodeAddr } from '../model/address.js';
import type { Cluster, Listener, MeshModel } from '../model/types.js';
import { l4Protocol } from '../model/validate.js';
import {
  CLUSTER_UNIFORM_WEIGHTS,
  endpointValue,
  IPPROTO_TCP,
  IPPROTO_UDP,
  LB_POLICY_CODES,
  listenerKey,
  listenerValue,
} from '../runtime/maps/layouts.js';
import { assignClusterIds } from './cluster-ids.js';

export interface DesiredCluster {
  id: number;
  name: string;
  lbPolicy: number;
  flags: number;
  totalWeight: number;
  /** Encoded kmesh_endpoint_value, in configured order (round robin follows it). */
  endpoints: Buffer[];
}

export interface DesiredListener {
  name: string;
  key: Buffer;
  /** key as hex, the identity of the listener entry in diffs. */
  keyHex: string;
  value: Buffer;
}

export interface DesiredState {
  clusterIds: Map<string, number>;
  clusters: Map<number, DesiredCluster>;
  /** By hex of the key. */
  listeners: Map<string, DesiredListener>;
}

function cumulative(weights: number[]): number[] {
  let sum = 0;
  return weights.map((w) => {
    sum += w;
    return sum;
  });
}

function desiredCluster(cluster: Cluster, id: number): DesiredCluster {
  const weights = cluster.endpoints.map((ep) => ep.weight);
  const cum = cumulative(weights);
  return {
    id,
    name: cluster.name,
    lbPolicy: LB_POLICY_CODES[cluster.lbPolicy],
    flags: weights.every((w) => w === weights[0]) ? CLUSTER_UNIFORM_WEIGHTS : 0,
    totalWeight: cum.at(-1) ?? 0,
    endpoints: cluster.endpoints.map((ep, i) =>
      endpointValue.encode({ addr: encodeAddr(ep.address), port: ep.port, cum_weight: cum[i] }),
    ),
  };
}

function desiredListener(listener: Listener, ids: Map<string, number>): DesiredListener {
  const cum = cumulative(listener.routes.map((r) => r.weight));
  const key = listenerKey.encode({
    addr: encodeAddr(listener.address),
    port: listener.port,
    protocol: l4Protocol(listener.protocol) === 'udp' ? IPPROTO_UDP : IPPROTO_TCP,
  });
  return {
    name: listener.name,
    key,
    keyHex: key.toString('hex'),
    value: listenerValue.encode({
      cluster_count: listener.routes.length,
      total_weight: cum.at(-1) ?? 0,
      cluster_ids: listener.routes.map((r) => ids.get(r.cluster) ?? 0),
      cum_weights: cum,
    }),
  };
}

/*
 * Encodings of unchanged resources are reused: sources hand over the same Cluster object
 * while it is unchanged, so a one-endpoint change re-encodes one cluster, not ten thousand.
 */
const encodedClusters = new WeakMap<Cluster, DesiredCluster>();
/** A listener's encoding depends on its clusters' ids too: kept with the ids it was made for. */
const encodedListeners = new WeakMap<Listener, { ids: number[]; entry: DesiredListener }>();

/** Expects a model that passed validateModel. */
export function desiredState(model: MeshModel): DesiredState {
  const clusterIds = assignClusterIds(model.clusters.map((c) => c.name));
  const clusters = new Map<number, DesiredCluster>();
  for (const cluster of model.clusters) {
    const id = clusterIds.get(cluster.name) as number;
    let encoded = encodedClusters.get(cluster);
    if (encoded?.id !== id) {
      encoded = desiredCluster(cluster, id);
      encodedClusters.set(cluster, encoded);
    }
    clusters.set(id, encoded);
  }
  const listeners = new Map<string, DesiredListener>();
  for (const listener of model.listeners) {
    const ids = listener.routes.map((r) => clusterIds.get(r.cluster) ?? 0);
    let cached = encodedListeners.get(listener);
    if (!cached || cached.ids.some((id, i) => id !== ids[i])) {
      cached = { ids, entry: desiredListener(listener, clusterIds) };
      encodedListeners.set(listener, cached);
    }
    listeners.set(cached.entry.keyHex, cached.entry);
  }
  return { clusterIds, clusters, listeners };
}
