/**
 * The model as map entries, before any kernel is touched: pure, so the load-balancing
 * tables (cumulative weights, cluster splits) are unit-tested directly.
 */

import { encodeAddr, writeAddr } from '../model/address.js';
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
  /** count × kmesh_endpoint_value, in configured order (round robin follows it); one buffer per cluster. */
  endpoints: Buffer;
}

export interface DesiredListener {
  name: string;
  /** kmesh_listener_key in slot 0 (the reconciler sets the slot it writes). */
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

const EP_SIZE = endpointValue.size;
const EP_ADDR = endpointValue.offsetOf('addr');
const EP_PORT = endpointValue.offsetOf('port');
const EP_CUM_WEIGHT = endpointValue.offsetOf('cum_weight');

/** Expects a cluster that passed validation. */
export function desiredCluster(cluster: Cluster, id: number): DesiredCluster {
  // One buffer for the set, written in place: a cluster is one allocation, not one per endpoint.
  const endpoints = Buffer.alloc(cluster.endpoints.length * EP_SIZE);
  const first = cluster.endpoints[0]?.weight;
  let sum = 0;
  let uniform = true;
  cluster.endpoints.forEach((ep, i) => {
    const at = i * EP_SIZE;
    sum += ep.weight;
    uniform &&= ep.weight === first;
    writeAddr(endpoints, at + EP_ADDR, ep.address);
    endpoints.writeUInt16LE(ep.port, at + EP_PORT);
    endpoints.writeUInt32LE(sum, at + EP_CUM_WEIGHT);
  });
  return {
    id,
    name: cluster.name,
    lbPolicy: LB_POLICY_CODES[cluster.lbPolicy],
    flags: uniform ? CLUSTER_UNIFORM_WEIGHTS : 0,
    totalWeight: sum,
    endpoints,
  };
}

/** Expects a listener that passed validation; `idOf` gives the id of each cluster it names. */
export function desiredListener(listener: Listener, idOf: (cluster: string) => number): DesiredListener {
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
      cluster_ids: listener.routes.map((r) => idOf(r.cluster)),
      cum_weights: cum,
    }),
  };
}

/** A whole model at once (expects one that passed validateModel). */
export function desiredState(model: MeshModel): DesiredState {
  const clusterIds = assignClusterIds(model.clusters.map((c) => c.name));
  const idOf = (name: string) => clusterIds.get(name) ?? 0;
  const clusters = new Map(model.clusters.map((c) => [idOf(c.name), desiredCluster(c, idOf(c.name))]));
  const listeners = new Map(
    model.listeners.map((l) => {
      const entry = desiredListener(l, idOf);
      return [entry.keyHex, entry];
    }),
  );
  return { clusterIds, clusters, listeners };
}
