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
import { MapBatch } from '../runtime/maps/batch.js';
import type { MapAccess } from '../runtime/maps/datapath-maps.js';
import {
  endpointValue,
  epOriginKey,
  IPPROTO_TCP,
  listenerKey,
  listenerValue,
  sockOrigin,
} from '../runtime/maps/layouts.js';
import type { Slicer } from '../runtime/slicer.js';

const EP_SIZE = endpointValue.size;
const EP_ADDR = endpointValue.offsetOf('addr');
const EP_PORT = endpointValue.offsetOf('port');
/** Endpoints between two looks at the clock. */
const SLICE_ENDPOINTS = 256;
const V4_WILDCARD = Buffer.from('00000000000000000000ffff00000000', 'hex');

interface Route {
  vip: Buffer;
  port: number;
  clusters: number[];
}

/** An entry to write: the endpoint, its owner so far, its new one. */
interface Change {
  ep: string;
  key: Buffer;
  current: Owner | undefined;
  next: Owner;
  /** The kmesh_sock_origin the entry gets. */
  value: Buffer;
}

/** What an endpoint's entry says, by whom. */
interface Owner {
  listener: string;
  cluster: number;
}

export class OriginIndex {
  /** TCP listeners on a concrete address, by key hex. */
  private readonly routes = new Map<string, Route>();
  /** Cluster id → the listeners routing to it → how many of their routes do. */
  private readonly routedBy = new Map<number, Map<string, number>>();
  /** Cluster id → its live endpoint values (count × kmesh_endpoint_value). */
  private readonly endpointsOf = new Map<number, Buffer>();
  /** Endpoint key hex → the clusters it is in. */
  private readonly clustersOf = new Map<string, Set<number>>();
  /** What kmesh_ep_origin holds: endpoint key hex → its owner. */
  private readonly written = new Map<string, Owner>();
  /** Listener key hex → the endpoints whose entry it owns. */
  private readonly owned = new Map<string, Set<string>>();
  private readonly dirty = new Set<string>();
  private readonly batch: MapBatch;

  constructor(
    private readonly map: MapAccess,
    private readonly logger: Logger,
  ) {
    this.batch = new MapBatch(map, epOriginKey.size, sockOrigin.size);
  }

  /** A cluster's live endpoint set changed (null: the cluster is gone). */
  setCluster(id: number, endpoints: Buffer | null): void {
    const before = new Set(endpointKeys(this.endpointsOf.get(id)));
    const after = new Set(endpointKeys(endpoints ?? undefined));
    for (const ep of before) {
      if (after.has(ep)) continue;
      const clusters = this.clustersOf.get(ep);
      clusters?.delete(id);
      if (clusters?.size === 0) this.clustersOf.delete(ep);
      this.dirty.add(ep);
    }
    for (const ep of after) {
      if (before.has(ep)) continue;
      const clusters = this.clustersOf.get(ep) ?? new Set<number>();
      clusters.add(id);
      this.clustersOf.set(ep, clusters);
      this.dirty.add(ep);
    }
    if (endpoints) this.endpointsOf.set(id, endpoints);
    else this.endpointsOf.delete(id);
  }

  /**
   * A listener changed (its kmesh_listener_key with slot 0 and value; null: the listener is gone). Costs the
   * endpoints it owned, plus the endpoints of a cluster nobody routed to before: an endpoint that some route
   * reaches always has an owner, so a further route to the same cluster changes no entry.
   */
  setListener(hex: string, live: { key: Buffer; value: Buffer } | null): void {
    const before = this.routes.get(hex);
    if (before) {
      for (const id of before.clusters) {
        const by = this.routedBy.get(id);
        const left = (by?.get(hex) ?? 0) - 1;
        if (left > 0) by?.set(hex, left);
        else by?.delete(hex);
        if (by?.size === 0) this.routedBy.delete(id);
      }
      this.routes.delete(hex);
      for (const ep of this.owned.get(hex) ?? []) this.dirty.add(ep);
    }
    if (!live) return;
    const k = listenerKey.decode(live.key);
    if (k.protocol !== IPPROTO_TCP || isWildcard(k.addr)) return;
    const v = listenerValue.decode(live.value);
    const route: Route = { vip: k.addr, port: k.port, clusters: v.cluster_ids.slice(0, v.cluster_count) };
    this.routes.set(hex, route);
    for (const id of route.clusters) {
      const by = this.routedBy.get(id) ?? new Map<string, number>();
      if (by.size === 0) for (const ep of endpointKeys(this.endpointsOf.get(id))) this.dirty.add(ep);
      by.set(hex, (by.get(hex) ?? 0) + 1);
      this.routedBy.set(id, by);
    }
  }

  /** The entries of a previous daemon, as a starting point (kept where their owner still routes). */
  adopt(): void {
    for (const [key, value] of this.map.entries()) {
      const ep = key.toString('hex');
      const o = sockOrigin.decode(value);
      const listener = listenerKey.encode({ addr: o.vip, port: o.vip_port, protocol: IPPROTO_TCP }).toString('hex');
      this.own(ep, { listener, cluster: o.cluster_id });
      this.dirty.add(ep);
    }
  }

  /**
   * Writes what the changes since the last flush decided, yielding to the event loop through `slice` (without
   * one it runs to the end at once). A failed write only costs connects their fast path.
   */
  async flush(slice?: Slicer): Promise<void> {
    const pending: Change[] = [];
    let seen = 0;
    for (const ep of this.dirty) {
      if (slice && ++seen % SLICE_ENDPOINTS === 0) await slice.next();
      const current = this.written.get(ep);
      if (current && this.routesTo(current.listener, current.cluster, ep)) continue;
      const key = Buffer.from(ep, 'hex');
      const next = this.candidate(ep, key);
      if (next) {
        if (this.batch.full) this.write(pending);
        key.copy(this.batch.add(next.value));
        pending.push({ ep, key, current, ...next });
        continue;
      }
      if (!current) continue;
      try {
        this.map.delete(key);
        this.disown(ep, current);
      } catch (err) {
        this.logger.warn({ err, endpoint: ep }, 'kmesh_ep_origin delete failed');
      }
    }
    this.write(pending);
    this.dirty.clear();
  }

  /** Sends the batch; if it fails, entry by entry, so that what is recorded is what the map holds. */
  private write(pending: Change[]): void {
    if (pending.length === 0) return;
    let batched = true;
    try {
      this.batch.flush();
    } catch {
      batched = false;
    }
    for (const { ep, key, current, next, value } of pending) {
      if (!batched) {
        try {
          this.map.update(key, value);
        } catch (err) {
          this.logger.warn({ err, endpoint: ep }, 'kmesh_ep_origin write failed');
          continue;
        }
      }
      if (current) this.disown(ep, current);
      this.own(ep, next);
    }
    pending.length = 0;
  }

  private routesTo(listener: string, cluster: number, ep: string): boolean {
    return (this.routedBy.get(cluster)?.has(listener) ?? false) && (this.clustersOf.get(ep)?.has(cluster) ?? false);
  }

  /** The first route that reaches the endpoint (its kmesh_ep_origin key as hex and bytes), and the entry it makes. */
  private candidate(ep: string, key: Buffer): { next: Owner; value: Buffer } | undefined {
    for (const cluster of this.clustersOf.get(ep) ?? []) {
      const listener = this.routedBy.get(cluster)?.keys().next().value;
      if (listener === undefined) continue;
      const route = this.routes.get(listener) as Route;
      const { addr, port } = epOriginKey.decode(key);
      const value = sockOrigin.encode({
        vip: route.vip,
        endpoint: addr,
        vip_port: route.port,
        endpoint_port: port,
        cluster_id: cluster,
      });
      return { next: { listener, cluster }, value };
    }
    return undefined;
  }

  private own(ep: string, owner: Owner): void {
    this.written.set(ep, owner);
    const eps = this.owned.get(owner.listener) ?? new Set<string>();
    eps.add(ep);
    this.owned.set(owner.listener, eps);
  }

  private disown(ep: string, owner: Owner): void {
    this.written.delete(ep);
    const eps = this.owned.get(owner.listener);
    eps?.delete(ep);
    if (eps?.size === 0) this.owned.delete(owner.listener);
  }
}

/** The kmesh_ep_origin key hex of each endpoint in a cluster's endpoint values. */
function* endpointKeys(endpoints: Buffer | undefined): Generator<string> {
  if (!endpoints) return;
  for (let at = 0; at < endpoints.length; at += EP_SIZE) {
    const addr = endpoints.subarray(at + EP_ADDR, at + EP_ADDR + 16);
    const port = endpoints.readUInt16LE(at + EP_PORT);
    yield epOriginKey.encode({ addr, port }).toString('hex');
  }
}

/** The unspecified address of either family: the listener matches whatever address was dialled. */
function isWildcard(addr: Buffer): boolean {
  return addr.equals(V4_WILDCARD) || addr.every((b) => b === 0);
}
