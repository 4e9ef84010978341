/** What is in the kernel maps right now, decoded for DumpConfig and `kmeshctl dump`. */
import { decodeAddr } from '../model/address.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import {
  clusterKey,
  clusterValue,
  endpointKey,
  endpointValue,
  listenerKey,
  listenerValue,
} from '../runtime/maps/layouts.js';

const PROTOCOL_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp' };

export function dumpMaps(maps: DatapathMaps, clusterNames: ReadonlyMap<number, string>) {
  const endpoints = maps.endpoints
    .entries()
    .map(([k, v]) => ({ key: endpointKey.decode(k), value: endpointValue.decode(v) }));
  return {
    listeners: maps.listeners.entries().map(([k, v]) => {
      const key = listenerKey.decode(k);
      const value = listenerValue.decode(v);
      return {
        address: decodeAddr(key.addr),
        port: key.port,
        protocol: PROTOCOL_NAMES[key.protocol] ?? String(key.protocol),
        clusters: value.cluster_ids.slice(0, value.cluster_count).map((id, i) => ({
          id,
          name: clusterNames.get(id) ?? null,
          cumulativeWeight: value.cum_weights[i],
        })),
      };
    }),
    clusters: maps.clusters.entries().map(([k, v]) => {
      const id = clusterKey.decode(k).id;
      const value = clusterValue.decode(v);
      return {
        id,
        name: clusterNames.get(id) ?? null,
        lbPolicy: value.lb_policy,
        generation: value.generation,
        totalWeight: value.total_weight,
        endpoints: endpoints
          .filter((e) => e.key.cluster_id === id && e.key.generation === value.generation)
          .sort((a, b) => a.key.index - b.key.index)
          .map((e) => ({
            address: decodeAddr(e.value.addr),
            port: e.value.port,
            cumulativeWeight: e.value.cum_weight,
          })),
      };
    }),
    endpointEntries: endpoints.length,
  };
}
