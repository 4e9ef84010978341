/**
 * kmesh_ep_origin: for each TCP endpoint, one origin (VIP, port, cluster) that routes to it. connect4 keeps
 * nothing per connection when its origin is that entry (bpf/kmesh_sock_origin_map.h); any other connect keeps
 * its own, so the entry only has to name *a* live route, and a wildcard listener (no VIP to name) never owns one.
 *
 * Kept in step with the reconciler's live config, incrementally: a change costs the endpoints of the listeners
 * and clusters it touches. An entry keeps its owner for as long as that owner still routes to the endpoint, so
 * that connections relying on it keep their labels when another VIP starts reaching the same endpoint.
 */
import type { Logger } from 'pino';
import type { MapAccess } from '../runtime/maps/datapath-maps.js';
import {
  endpointValue,
  epOriginKey,
  IPPROTO_TCP,
  listenerKey,
  listenerValue,
  sockOrigin,
} from '../runtime/maps/layouts.js';

const EP_SIZE = endpointValue.size;
const EP_ADDR = endpointValue.offsetOf('addr');
const EP_PORT = endpointValue.offsetOf('port');
const V4_WILDCARD = Buffer.from('00000000000000000000ffff00000000', 'hex');

interface Route {
  vip: Buffer;
  port: number;
  clusters: number[];
}

export class OriginIndex {
  /** TCP listeners on a concrete address, by key hex. */
  private readonly routes = new Map<string, Route>();
  /** Cluster id → the listeners routing to it → how many of their routes do. */
  private readonly routedBy = new Map<number, Map<string, number>>();
  /** Cluster id → its live endpoint values (count × kmesh_endpoint_value). */
  private readonly endpointsOf = new Map<number, Buffer>();
  /** Endpoint key hex → candidate origin hex → how many routes make it one. */
  private readonly owners = new Map<string, Map<string, number>>();
  /** What kmesh_ep_origin holds: endpoint key hex → origin hex. */
  private readonly written = new Map<string, string>();
  private readonly dirty = new Set<string>();

  constructor(
    private readonly map: MapAccess,
    private readonly logger: Logger,
  ) {}

  /** A cluster's live endpoint set changed (null: the cluster is gone). */
  setCluster(id: number, endpoints: Buffer | null): void {
    const before = this.endpointsOf.get(id);
    for (const [hex, n] of this.routedBy.get(id) ?? []) {
      const route = this.routes.get(hex) as Route;
      if (before) this.count(route, id, before, -n);
      if (endpoints) this.count(route, id, endpoints, n);
    }
    if (endpoints) this.endpointsOf.set(id, endpoints);
    else this.endpointsOf.delete(id);
  }

  /** A listener changed (its kmesh_listener_key with slot 0 and value; null: the listener is gone). */
  setListener(hex: string, live: { key: Buffer; value: Buffer } | null): void {
    const before = this.routes.get(hex);
    if (before) {
      for (const id of before.clusters) {
        this.count(before, id, this.endpointsOf.get(id), -1);
        const by = this.routedBy.get(id);
        const left = (by?.get(hex) ?? 0) - 1;
        if (left > 0) by?.set(hex, left);
        else by?.delete(hex);
        if (by?.size === 0) this.routedBy.delete(id);
      }
      this.routes.delete(hex);
    }
    if (!live) return;
    const k = listenerKey.decode(live.key);
    if (k.protocol !== IPPROTO_TCP || isWildcard(k.addr)) return;
    const v = listenerValue.decode(live.value);
    const route: Route = { vip: k.addr, port: k.port, clusters: v.cluster_ids.slice(0, v.cluster_count) };
    this.routes.set(hex, route);
    for (const id of route.clusters) {
      const by = this.routedBy.get(id) ?? new Map<string, number>();
      by.set(hex, (by.get(hex) ?? 0) + 1);
      this.routedBy.set(id, by);
      this.count(route, id, this.endpointsOf.get(id), 1);
    }
  }

  /** The entries of a previous daemon, as a starting point (kept where their owner still routes). */
  adopt(): void {
    for (const [key, value] of this.map.entries()) {
      const hex = key.toString('hex');
      this.written.set(hex, value.toString('hex'));
      this.dirty.add(hex);
    }
  }

  /** Writes what the changes since the last flush decided. A failed write only costs connects their fast path. */
  flush(): void {
    for (const ep of this.dirty) {
      const candidates = this.owners.get(ep);
      const current = this.written.get(ep);
      try {
        if (!candidates) {
          if (current !== undefined) this.map.delete(Buffer.from(ep, 'hex'));
          this.written.delete(ep);
          continue;
        }
        if (current !== undefined && candidates.has(current)) continue;
        const owner = candidates.keys().next().value as string;
        this.map.update(Buffer.from(ep, 'hex'), Buffer.from(owner, 'hex'));
        this.written.set(ep, owner);
      } catch (err) {
        this.logger.warn({ err, endpoint: ep }, 'kmesh_ep_origin write failed');
      }
    }
    this.dirty.clear();
  }

  private count(route: Route, clusterId: number, endpoints: Buffer | undefined, n: number): void {
    if (!endpoints) return;
    for (let at = 0; at < endpoints.length; at += EP_SIZE) {
      const addr = endpoints.subarray(at + EP_ADDR, at + EP_ADDR + 16);
      const port = endpoints.readUInt16LE(at + EP_PORT);
      const ep = epOriginKey.encode({ addr, port }).toString('hex');
      const origin = sockOrigin
        .encode({ vip: route.vip, endpoint: addr, vip_port: route.port, endpoint_port: port, cluster_id: clusterId })
        .toString('hex');
      const owners = this.owners.get(ep) ?? new Map<string, number>();
      const left = (owners.get(origin) ?? 0) + n;
      if (left > 0) owners.set(origin, left);
      else owners.delete(origin);
      if (owners.size > 0) this.owners.set(ep, owners);
      else this.owners.delete(ep);
      this.dirty.add(ep);
    }
  }
}

/** The unspecified address of either family: the listener matches whatever address was dialled. */
function isWildcard(addr: Buffer): boolean {
  return addr.equals(V4_WILDCARD) || addr.every((b) => b === 0);
}
