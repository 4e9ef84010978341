/**
 * The HTTP route model (Listener.virtualHosts) as L7 map entries, before any kernel is
 * touched: pure, so the encoding is unit-tested directly. Throws with a message naming
 * the listener/route when something does not fit the kernel's limits.
 */
import { isIPv4 } from 'node:net';
import { L7_HASH_COOKIE, L7_HASH_HEADER, L7_HASH_NONE } from '../abi/kernel.js';
import { encodeAddr } from '../model/address.js';
import { hashes, hashHeaderName } from '../model/hash-policy.js';
import { L7_LIMITS } from '../model/l7-limits.js';
import type {
  Cluster,
  HeaderMatcher,
  HttpRoute,
  Listener,
  MeshModel,
  RouteHashPolicy,
  WeightedCluster,
} from '../model/types.js';
import { endpointLevels } from '../model/validate-resilience.js';
import { IPPROTO_TCP, listenerKey } from '../runtime/maps/layouts.js';
import { l7Hash } from './hash.js';
import {
  anchorFields,
  DOMAIN_KIND,
  L7_MATCHERS_PER_ROUTE,
  LISTENER_FLAGS,
  l7Cluster,
  l7DomainKey,
  l7HeaderKey,
  l7Listener,
  l7Matcher,
  l7Route,
  l7RouteKey,
  l7Vhost,
  MATCH_KIND,
  NO_POS,
  SLOT,
} from './layouts.js';

export interface Entry {
  key: Buffer;
  value: Buffer;
}

export interface RouteName {
  listener: string;
  virtualHost: string;
  route: string;
}

export interface DesiredL7 {
  /** Every table by map, entries by hex of the key. */
  tables: {
    listeners: Map<string, Entry>;
    domains: Map<string, Entry>;
    headerNames: Map<string, Entry>;
    vhosts: Map<string, Entry>;
    routes: Map<string, Entry>;
    clusters: Map<string, Entry>;
  };
  /** Endpoints that need a pool of pre-connected sockets, by "address:port". */
  endpoints: Map<string, PoolPlan>;
  /** Cluster id → max_pending_requests: first requests the slow path may hold waiting for a connect. */
  maxPending: Map<number, number>;
  routeNames: Map<number, RouteName>;
}

/** How a pooled endpoint is named in DesiredL7.endpoints and the pool ids. */
export const poolKey = (address: string, port: number): string => `${address}:${port}`;

export interface PoolPlan {
  /** The clusters routes reach the endpoint through: a failed pool connect counts for each. */
  clusterIds: number[];
  /** The shortest connect_timeout of those clusters, if any sets one. */
  connectTimeoutMs?: number;
}

export interface Anchor {
  address: string;
  port: number;
}

/** Listeners whose first request is routed in the kernel: http with virtual hosts, IPv4 or the v4 wildcard. */
export function isL7Listener(l: Listener): boolean {
  return l.protocol === 'http' && (l.virtualHosts?.length ?? 0) > 0 && isIPv4(l.address);
}

const lower = (s: string) => s.toLowerCase();

function checkString(what: string, value: string): void {
  if (Buffer.byteLength(value) > L7_LIMITS.maxStringBytes) {
    throw new Error(`${what}: "${value.slice(0, 40)}…" is longer than ${L7_LIMITS.maxStringBytes} bytes`);
  }
}

function split(clusters: WeightedCluster[], ids: Map<string, number>, what: string) {
  if (clusters.length > L7_LIMITS.clustersPerRoute) {
    throw new Error(`${what}: ${clusters.length} weighted clusters, at most ${L7_LIMITS.clustersPerRoute}`);
  }
  let sum = 0;
  const cum = clusters.map((c) => {
    sum += c.weight;
    return sum;
  });
  return {
    cluster_count: clusters.length,
    total_weight: sum,
    cluster_ids: clusters.map((c) => {
      const id = ids.get(c.cluster);
      if (id === undefined) throw new Error(`${what}: unknown cluster ${c.cluster}`);
      return id;
    }),
    cum_weights: cum,
  };
}

function domainEntry(domain: string): { kind: number; hash: bigint } {
  const d = lower(domain);
  if (d === '*') return { kind: DOMAIN_KIND.any, hash: 0n };
  if (d.startsWith('*')) return { kind: DOMAIN_KIND.suffix, hash: l7Hash(d.slice(1)) };
  if (d.endsWith('*')) return { kind: DOMAIN_KIND.prefix, hash: l7Hash(d.slice(0, -1)) };
  return { kind: DOMAIN_KIND.exact, hash: l7Hash(d) };
}

/** Slot of each header name the listener's routes match on or hash (host and :method have fixed slots). */
function headerSlots(l: Listener): Map<string, number> {
  const slots = new Map<string, number>();
  for (const vh of l.virtualHosts ?? []) {
    for (const r of vh.routes) {
      const hashed = r.hashPolicy ? [hashHeaderName(r.hashPolicy)] : [];
      for (const name of [...r.match.headers.map((h) => lower(h.name)), ...hashed]) {
        if (name === ':method' || name === ':authority' || name === 'host' || slots.has(name)) continue;
        if (slots.size >= L7_LIMITS.headerNamesPerListener) {
          throw new Error(
            `listener ${l.name}: routes match on more than ${L7_LIMITS.headerNamesPerListener} header names`,
          );
        }
        slots.set(name, SLOT.firstHeader + slots.size);
      }
    }
  }
  return slots;
}

function headerMatcher(h: HeaderMatcher, slots: Map<string, number>, what: string) {
  const name = lower(h.name);
  const slot =
    name === ':method' ? SLOT.method : name === ':authority' || name === 'host' ? SLOT.host : slots.get(name);
  if (slot === undefined) throw new Error(`${what}: header ${h.name} has no slot`);
  const m = h.matcher;
  if (m.kind === 'present') return { slot, kind: MATCH_KIND.present, invert: h.invert ? 1 : 0, len: 0, hash: 0n };
  checkString(`${what}: header ${h.name}`, m.value);
  const value = slot === SLOT.host ? lower(m.value) : m.value;
  return {
    slot,
    kind: MATCH_KIND[m.kind],
    invert: h.invert ? 1 : 0,
    len: Buffer.byteLength(value),
    hash: l7Hash(value),
  };
}

/** A route's hash policy as kmesh_l7_route fields: the captured header, and the cookie's name within it. */
function hashFields(p: RouteHashPolicy | undefined, slots: Map<string, number>, what: string) {
  if (!p) return { hash_kind: L7_HASH_NONE, hash_slot: 0, cookie_len: 0, cookie_hash: 0n };
  const header = hashHeaderName(p);
  const slot = header === 'host' ? SLOT.host : slots.get(header);
  if (slot === undefined) throw new Error(`${what}: hash header ${header} has no slot`);
  const cookie = p.kind === 'cookie';
  return {
    hash_kind: cookie ? L7_HASH_COOKIE : L7_HASH_HEADER,
    hash_slot: slot,
    cookie_len: cookie ? Buffer.byteLength(p.name) : 0,
    cookie_hash: cookie ? l7Hash(p.name) : 0n,
  };
}

function routeValue(r: HttpRoute, routeId: number, slots: Map<string, number>, ids: Map<string, number>, what: string) {
  const matchers: Array<{ slot: number; kind: number; invert: number; len: number; hash: bigint }> = [];
  if (r.match.path) {
    checkString(`${what}: path`, r.match.path.value);
    matchers.push({
      slot: SLOT.path,
      kind: MATCH_KIND[r.match.path.kind],
      invert: 0,
      len: Buffer.byteLength(r.match.path.value),
      hash: l7Hash(r.match.path.value),
    });
  }
  const headers = [...r.match.headers];
  if (r.match.method)
    headers.push({ name: ':method', matcher: { kind: 'exact', value: r.match.method }, invert: false });
  if (headers.length > L7_LIMITS.headersPerRoute) {
    throw new Error(`${what}: ${headers.length} header matchers, at most ${L7_LIMITS.headersPerRoute}`);
  }
  for (const h of headers) matchers.push(headerMatcher(h, slots, what));
  const packed = Buffer.alloc(l7Matcher.size * L7_MATCHERS_PER_ROUTE);
  for (const [i, m] of matchers.entries()) l7Matcher.encode(m).copy(packed, i * l7Matcher.size);
  return l7Route.encode({
    route_id: routeId,
    matcher_count: matchers.length,
    matchers: packed,
    ...split(r.clusters, ids, what),
    ...hashFields(r.hashPolicy, slots, what),
  });
}

function put(map: Map<string, Entry>, key: Buffer, value: Buffer): void {
  map.set(key.toString('hex'), { key, value });
}

/**
 * Expects a model that passed validateModel; clusterIds are the L4 ids (desiredState);
 * poolIdOf gives the pool of an endpoint "address:port" (stable while it is used).
 */
export function desiredL7(
  model: MeshModel,
  clusterIds: Map<string, number>,
  anchor: Anchor,
  poolIdOf: (endpoint: string) => number,
  /** Names → stable 32-bit ids (the controller's assignClusterIds). */
  assignIds: (names: string[]) => Map<string, number>,
): DesiredL7 {
  const out: DesiredL7 = {
    tables: {
      listeners: new Map(),
      domains: new Map(),
      headerNames: new Map(),
      vhosts: new Map(),
      routes: new Map(),
      clusters: new Map(),
    },
    endpoints: new Map(),
    maxPending: new Map(),
    routeNames: new Map(),
  };
  const listeners = model.listeners.filter(isL7Listener);
  if (listeners.length > L7_LIMITS.listeners) {
    throw new Error(`${listeners.length} listeners with HTTP routes, at most ${L7_LIMITS.listeners}`);
  }
  const listenerIds = assignIds(listeners.map((l) => l.name));
  const vhostIds = assignIds(listeners.flatMap((l) => (l.virtualHosts ?? []).map((vh) => `${l.name}/${vh.name}`)));
  const routeIds = assignIds(
    listeners.flatMap((l) =>
      (l.virtualHosts ?? []).flatMap((vh) => vh.routes.map((r, i) => `${l.name}/${vh.name}/${i}/${r.name}`)),
    ),
  );
  const usedClusters = new Set<string>();
  for (const l of listeners) {
    const listenerId = listenerIds.get(l.name) as number;
    const slots = headerSlots(l);
    put(out.tables.headerNames, l7HeaderKey.encode({ hash: l7Hash('host'), listener_id: listenerId }), u32(SLOT.host));
    for (const [name, slot] of slots) {
      put(out.tables.headerNames, l7HeaderKey.encode({ hash: l7Hash(name), listener_id: listenerId }), u32(slot));
    }
    let flags = 0;
    for (const vh of l.virtualHosts ?? []) {
      const vhostId = vhostIds.get(`${l.name}/${vh.name}`) as number;
      const what = `listener ${l.name} virtual host ${vh.name}`;
      if (vh.routes.length > L7_LIMITS.routesPerVirtualHost) {
        throw new Error(`${what}: ${vh.routes.length} routes, at most ${L7_LIMITS.routesPerVirtualHost}`);
      }
      for (const domain of vh.domains) {
        checkString(`${what}: domain`, domain);
        const d = domainEntry(domain);
        flags |=
          d.kind === DOMAIN_KIND.suffix
            ? LISTENER_FLAGS.suffixDomains
            : d.kind === DOMAIN_KIND.prefix
              ? LISTENER_FLAGS.prefixDomains
              : d.kind === DOMAIN_KIND.any
                ? LISTENER_FLAGS.anyDomain
                : 0;
        const key = l7DomainKey.encode({ hash: d.hash, listener_id: listenerId, kind: d.kind });
        // the first virtual host naming a domain wins, as in Envoy's validation order
        if (!out.tables.domains.has(key.toString('hex'))) put(out.tables.domains, key, u32(vhostId));
      }
      put(out.tables.vhosts, u32(vhostId), l7Vhost.encode({ route_count: vh.routes.length }));
      for (const [i, r] of vh.routes.entries()) {
        const routeId = routeIds.get(`${l.name}/${vh.name}/${i}/${r.name}`) as number;
        put(
          out.tables.routes,
          l7RouteKey.encode({ vhost_id: vhostId, index: i }),
          routeValue(r, routeId, slots, clusterIds, `${what} route ${r.name || i}`),
        );
        out.routeNames.set(routeId, { listener: l.name, virtualHost: vh.name, route: r.name || String(i) });
        for (const c of r.clusters) usedClusters.add(c.cluster);
      }
    }
    for (const c of l.routes) usedClusters.add(c.cluster);
    put(
      out.tables.listeners,
      listenerKey.encode({ addr: encodeAddr(l.address), port: l.port, protocol: IPPROTO_TCP }),
      l7Listener.encode({
        listener_id: listenerId,
        flags,
        ...anchorFields(anchor.address, anchor.port),
        ...split(l.routes, clusterIds, `listener ${l.name} default route`),
      }),
    );
  }
  const byName = new Map(model.clusters.map((c) => [c.name, c]));
  for (const name of usedClusters) {
    const cluster = byName.get(name);
    if (!cluster) continue;
    const id = clusterIds.get(name) as number;
    put(out.tables.clusters, u32(id), clusterValue(cluster, id, out.endpoints, poolIdOf));
    if (cluster.maxPendingRequests !== undefined) out.maxPending.set(id, cluster.maxPendingRequests);
  }
  return out;
}

function clusterValue(
  cluster: Cluster,
  id: number,
  endpoints: Map<string, PoolPlan>,
  poolIdOf: (endpoint: string) => number,
): Buffer {
  const eps = cluster.endpoints.filter((e) => isIPv4(e.address));
  if (eps.length > L7_LIMITS.endpointsPerCluster) {
    throw new Error(
      `cluster ${cluster.name}: ${eps.length} endpoints, HTTP routes use at most ${L7_LIMITS.endpointsPerCluster}`,
    );
  }
  let sum = 0;
  const keys = eps.map((e) => poolKey(e.address, e.port));
  for (const k of keys) {
    const plan = endpoints.get(k) ?? { clusterIds: [] };
    plan.clusterIds.push(id);
    const timeout = cluster.connectTimeoutMs;
    if (timeout !== undefined) plan.connectTimeoutMs = Math.min(timeout, plan.connectTimeoutMs ?? timeout);
    endpoints.set(k, plan);
  }
  // kmesh_lb_table names endpoints by their index in the L4 layout (priority order): where each is here
  const tablePos = hashes(cluster)
    ? endpointLevels(cluster)
        .slice(0, L7_LIMITS.endpointsPerCluster)
        .map((o) => eps.indexOf(o.ep))
        .map((i) => (i < 0 ? NO_POS : i))
    : [];
  return l7Cluster.encode({
    endpoint_count: eps.length,
    total_weight: eps.reduce((s, e) => s + e.weight, 0),
    pool_ids: keys.map(poolIdOf),
    cum_weights: eps.map((e) => {
      sum += e.weight;
      return sum;
    }),
    table_pos: [...tablePos, ...new Array(L7_LIMITS.endpointsPerCluster - tablePos.length).fill(NO_POS)],
    // the ejection state of each endpoint is looked up by these (the last 4 bytes of ::ffff:a.b.c.d)
    ep_ip4: Buffer.concat(
      eps.map((e) => encodeAddr(e.address).subarray(12)),
      4 * L7_LIMITS.endpointsPerCluster,
    ),
    ep_port: [...eps.map((e) => e.port), ...new Array(L7_LIMITS.endpointsPerCluster - eps.length).fill(0)],
    max_requests: cluster.maxRequests ?? 0,
  });
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
