/** What the kernel maps steer by right now (the active slot), decoded for DumpConfig and `kmeshctl dump`. */
import { decodeAddr } from '../model/address.js';
import type { MapAccess } from '../runtime/maps/datapath-maps.js';
import {
  activeSlotKey,
  activeSlotValue,
  clusterKey,
  clusterValue,
  endpointKey,
  endpointValue,
  listenerKey,
  listenerValue,
} from '../runtime/maps/layouts.js';

const PROTOCOL_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp' };

type DumpMaps = Record<'listeners' | 'clusters' | 'endpoints' | 'activeSlot', Pick<MapAccess, 'entries' | 'lookup'>>;

/** The slot the programs read. */
export function readActiveSlot(maps: Pick<DumpMaps, 'activeSlot'>): number {
  const word = maps.activeSlot.lookup(activeSlotKey.encode({ index: 0 }));
  return word ? activeSlotValue.decode(word).slot : 0;
}

export function dumpMaps(maps: DumpMaps, nameOf: (id: number) => string | undefined = () => undefined) {
  const slot = readActiveSlot(maps);
  const endpoints = maps.endpoints
    .entries()
    .map(([k, v]) => ({ key: endpointKey.decode(k), value: endpointValue.decode(v) }));
  const listeners = maps.listeners
    .entries()
    .map(([k, v]) => ({ key: listenerKey.decode(k), value: listenerValue.decode(v) }));
  const clusters = maps.clusters
    .entries()
    .map(([k, v]) => ({ key: clusterKey.decode(k), value: clusterValue.decode(v) }));
  return {
    activeSlot: slot,
    listeners: listeners
      .filter(({ key }) => key.slot === slot)
      .map(({ key, value }) => ({
        address: decodeAddr(key.addr),
        port: key.port,
        protocol: PROTOCOL_NAMES[key.protocol] ?? String(key.protocol),
        clusters: value.cluster_ids.slice(0, value.cluster_count).map((id, i) => ({
          id,
          name: nameOf(id) ?? null,
          cumulativeWeight: value.cum_weights[i],
        })),
      })),
    clusters: clusters
      .filter(({ key }) => key.slot === slot)
      .map(({ key, value }) => ({
        id: key.id,
        name: nameOf(key.id) ?? null,
        lbPolicy: value.lb_policy,
        generation: value.generation,
        totalWeight: value.total_weight,
        endpoints: endpoints
          .filter((e) => e.key.cluster_id === key.id && e.key.generation === value.generation)
          .sort((a, b) => a.key.index - b.key.index)
          .map((e) => ({
            address: decodeAddr(e.value.addr),
            port: e.value.port,
            cumulativeWeight: e.value.cum_weight,
          })),
      })),
    endpointEntries: endpoints.length,
  };
}
