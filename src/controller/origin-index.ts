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

/*
 * An endpoint is named by the 18 bytes its kmesh_ep_origin key starts with (address, then port), as a latin1
 * string read straight off the endpoint values: one small string per endpoint, no Buffer, no hex. A full push
 * indexes 10,000 endpoints; the per-endpoint objects and codec calls of a general encoding were most of its cost.
 */
const EP_SIZE = endpointValue.size;
const EP_ADDR = endpointValue.offsetOf('addr');
const ID_LEN = 18;
const KEY_ADDR = epOriginKey.offsetOf('addr');
const O_VIP = sockOrigin.offsetOf('vip');
const O_ENDPOINT = sockOrigin.offsetOf('endpoint');
const O_VIP_PORT = sockOrigin.offsetOf('vip_port');
const O_ENDPOINT_PORT = sockOrigin.offsetOf('endpoint_port');
const O_CLUSTER = sockOrigin.offsetOf('cluster_id');
const LK_ADDR = listenerKey.offsetOf('addr');
const LK_PORT = listenerKey.offsetOf('port');
const LK_PROTOCOL = listenerKey.offsetOf('protocol');
const LV_COUNT = listenerValue.offsetOf('cluster_count');
const LV_IDS = listenerValue.offsetOf('cluster_ids');
// The id is both the endpoint value's and the key's first bytes only while both say address, then port.
if (
  endpointValue.offsetOf('port') !== EP_ADDR + 16 ||
  epOriginKey.offsetOf('port') !== KEY_ADDR + 16 ||
  sockOrigin.offsetOf('endpoint_port') !== O_VIP_PORT + 2
)
  throw new Error('kmesh_ep_origin index: endpoint layouts changed');
/** Endpoints between two looks at the clock. */
const SLICE_ENDPOINTS = 256;

/** A TCP listener on a concrete address; owners are made once per cluster it routes to and shared. */
interface Route {
  listener: string;
  vip: Buffer;
  port: number;
  clusters: number[];
  owners: Map<number, Owner>;
}

/** What an endpoint's entry says, by whom (shared by every endpoint the same route and cluster own). */
interface Owner {
  route: Route;
  cluster: number;
  /** How many entries say so. */
  count: number;
}

export class OriginIndex {
  /** TCP listeners on a concrete address, by key hex. */
  private readonly routes = new Map<string, Route>();
  /** Cluster id → the listeners routing to it → how many of their routes do. */
  private readonly routedBy = new Map<number, Map<string, number>>();
  /** Cluster id → the ids of its live endpoints. */
  private readonly endpointsOf = new Map<number, string[]>();
  /** Endpoint id → the cluster it is in, or the clusters (an endpoint in several). */
  private readonly clustersOf = new Map<string, number | number[]>();
  /** What kmesh_ep_origin holds: endpoint id → its owner. */
  private readonly written = new Map<string, Owner>();
  private readonly dirty = new Set<string>();
  private readonly batch: MapBatch;
  /** One entry's key and value, built in place. */
  private readonly key = Buffer.alloc(epOriginKey.size);
  private readonly value = Buffer.alloc(sockOrigin.size);

  constructor(
    private readonly map: MapAccess,
    private readonly logger: Logger,
  ) {
    this.batch = new MapBatch(map, epOriginKey.size, sockOrigin.size);
  }

  /** A cluster's live endpoint set changed (null: the cluster is gone). */
  setCluster(id: number, endpoints: Buffer | null): void {
    const before = this.endpointsOf.get(id);
    const after = endpoints ? endpointIds(endpoints) : [];
    const kept = before && after.length > 0 ? new Set(after) : undefined;
    for (const ep of before ?? []) {
      if (kept?.has(ep)) continue;
      this.leave(ep, id);
      this.dirty.add(ep);
    }
    const had = before && before.length > 0 ? new Set(before) : undefined;
    for (const ep of after) {
      if (had?.has(ep)) continue;
      this.join(ep, id);
      this.dirty.add(ep);
    }
    if (after.length > 0) this.endpointsOf.set(id, after);
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
      // What it owns: endpoints of the clusters it routed to (an endpoint that left one is dirty already).
      for (const [id, owner] of before.owners)
        if (owner.count > 0) for (const ep of this.endpointsOf.get(id) ?? []) this.dirty.add(ep);
    }
    if (!live || live.key[LK_PROTOCOL] !== IPPROTO_TCP) return;
    const vip = live.key.subarray(LK_ADDR, LK_ADDR + 16);
    if (vip.every((b) => b === 0) || isV4Wildcard(vip)) return;
    const count = live.value.readUInt32LE(LV_COUNT);
    const clusters = Array.from({ length: count }, (_, i) => live.value.readUInt32LE(LV_IDS + 4 * i));
    const route: Route = { listener: hex, vip, port: live.key.readUInt16LE(LK_PORT), clusters, owners: new Map() };
    this.routes.set(hex, route);
    for (const id of clusters) {
      const by = this.routedBy.get(id) ?? new Map<string, number>();
      if (by.size === 0) for (const ep of this.endpointsOf.get(id) ?? []) this.dirty.add(ep);
      by.set(hex, (by.get(hex) ?? 0) + 1);
      this.routedBy.set(id, by);
    }
  }

  /** The entries of a previous daemon, as a starting point (kept where their owner still routes). */
  adopt(): void {
    const adopted = new Map<string, Route>();
    for (const [key, value] of this.map.entries()) {
      const ep = key.toString('latin1', KEY_ADDR, KEY_ADDR + ID_LEN);
      const o = sockOrigin.decode(value);
      const listener = listenerKey.encode({ addr: o.vip, port: o.vip_port, protocol: IPPROTO_TCP }).toString('hex');
      // A placeholder route: it names the listener until setListener says whether it still routes there.
      let route = adopted.get(listener);
      if (!route) {
        route = { listener, vip: o.vip, port: o.vip_port, clusters: [], owners: new Map() };
        adopted.set(listener, route);
      }
      this.own(ep, ownerOf(route, o.cluster_id));
      this.dirty.add(ep);
    }
  }

  /**
   * Writes what the changes since the last flush decided, yielding to the event loop through `slice` (without
   * one it runs to the end at once). A failed write only costs connects their fast path.
   */
  async flush(slice?: Slicer): Promise<void> {
    const eps: string[] = [];
    const owners: Owner[] = [];
    let seen = 0;
    for (const ep of this.dirty) {
      if (slice && ++seen % SLICE_ENDPOINTS === 0) await slice.next();
      const current = this.written.get(ep);
      if (current && this.routesTo(current, ep)) {
        // Still routed, maybe by a newer version of the listener (same VIP and port): the entry stays, its
        // owner becomes that version's, whose changes are the ones that will concern it.
        const live = this.routes.get(current.route.listener) as Route;
        if (live !== current.route) this.own(ep, ownerOf(live, current.cluster));
        continue;
      }
      const next = this.candidate(ep);
      if (next) {
        if (this.batch.full) this.write(eps, owners);
        const key = this.entry(ep, next);
        key.copy(this.batch.add(this.value));
        eps.push(ep);
        owners.push(next);
        continue;
      }
      if (!current) continue;
      try {
        this.map.delete(this.keyOf(ep));
        this.written.delete(ep);
        current.count--;
      } catch (err) {
        this.logger.warn({ err, endpoint: endpointName(ep) }, 'kmesh_ep_origin delete failed');
      }
    }
    this.write(eps, owners);
    this.dirty.clear();
  }

  /** Sends the batch; if it fails, entry by entry, so that what is recorded is what the map holds. */
  private write(eps: string[], owners: Owner[]): void {
    if (eps.length === 0) return;
    let batched = true;
    try {
      this.batch.flush();
    } catch {
      batched = false;
    }
    for (let i = 0; i < eps.length; i++) {
      const ep = eps[i] as string;
      const next = owners[i] as Owner;
      if (!batched) {
        try {
          this.map.update(this.entry(ep, next), this.value);
        } catch (err) {
          this.logger.warn({ err, endpoint: endpointName(ep) }, 'kmesh_ep_origin write failed');
          continue;
        }
      }
      this.own(ep, next);
    }
    eps.length = 0;
    owners.length = 0;
  }

  private routesTo(owner: Owner, ep: string): boolean {
    if (!this.routedBy.get(owner.cluster)?.has(owner.route.listener)) return false;
    const clusters = this.clustersOf.get(ep);
    return typeof clusters === 'number' ? clusters === owner.cluster : (clusters?.includes(owner.cluster) ?? false);
  }

  /** The first route that reaches the endpoint. */
  private candidate(ep: string): Owner | undefined {
    const clusters = this.clustersOf.get(ep);
    if (typeof clusters === 'number') return this.routeTo(clusters);
    for (const cluster of clusters ?? []) {
      const owner = this.routeTo(cluster);
      if (owner) return owner;
    }
    return undefined;
  }

  /** The first listener routing to the cluster, as an owner. */
  private routeTo(cluster: number): Owner | undefined {
    const by = this.routedBy.get(cluster);
    if (by === undefined) return undefined;
    for (const listener of by.keys()) return ownerOf(this.routes.get(listener) as Route, cluster);
    return undefined;
  }

  /** The endpoint's kmesh_ep_origin key and (in this.value) the entry its owner gives it. */
  private entry(ep: string, owner: Owner): Buffer {
    const v = this.value;
    owner.route.vip.copy(v, O_VIP);
    v.write(ep, O_ENDPOINT, 16, 'latin1');
    v.writeUInt16LE(owner.route.port, O_VIP_PORT);
    v.writeUInt16LE(ep.charCodeAt(16) | (ep.charCodeAt(17) << 8), O_ENDPOINT_PORT);
    v.writeUInt32LE(owner.cluster, O_CLUSTER);
    return this.keyOf(ep);
  }

  private keyOf(ep: string): Buffer {
    this.key.fill(0);
    this.key.write(ep, KEY_ADDR, ID_LEN, 'latin1');
    return this.key;
  }

  private join(ep: string, cluster: number): void {
    const clusters = this.clustersOf.get(ep);
    if (clusters === undefined) this.clustersOf.set(ep, cluster);
    else if (typeof clusters === 'number') {
      if (clusters !== cluster) this.clustersOf.set(ep, [clusters, cluster]);
    } else if (!clusters.includes(cluster)) clusters.push(cluster);
  }

  private leave(ep: string, cluster: number): void {
    const clusters = this.clustersOf.get(ep);
    if (clusters === cluster) this.clustersOf.delete(ep);
    else if (Array.isArray(clusters)) {
      const rest = clusters.filter((c) => c !== cluster);
      this.clustersOf.set(ep, rest.length === 1 ? (rest[0] as number) : rest);
    }
  }

  private own(ep: string, owner: Owner): void {
    const current = this.written.get(ep);
    if (current) current.count--;
    this.written.set(ep, owner);
    owner.count++;
  }
}

/** The ids of the endpoints in a cluster's endpoint values. */
function endpointIds(endpoints: Buffer): string[] {
  const ids: string[] = new Array(endpoints.length / EP_SIZE);
  for (let i = 0, at = EP_ADDR; at < endpoints.length; i++, at += EP_SIZE)
    ids[i] = endpoints.toString('latin1', at, at + ID_LEN);
  return ids;
}

function ownerOf(route: Route, cluster: number): Owner {
  let owner = route.owners.get(cluster);
  if (!owner) {
    owner = { route, cluster, count: 0 };
    route.owners.set(cluster, owner);
  }
  return owner;
}

/** For logs: the endpoint's address bytes and port. */
function endpointName(ep: string): string {
  return `${Buffer.from(ep.slice(0, 16), 'latin1').toString('hex')} port ${ep.charCodeAt(16) | (ep.charCodeAt(17) << 8)}`;
}

/** ::ffff:0.0.0.0, the IPv4 unspecified address: the listener matches whatever address was dialled. */
function isV4Wildcard(addr: Buffer): boolean {
  return (
    addr.readUInt32BE(8) === 0xffff &&
    addr.readUInt32BE(12) === 0 &&
    addr.readUInt32BE(0) === 0 &&
    addr.readUInt32BE(4) === 0
  );
}
