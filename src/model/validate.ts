/**
 * Semantic checks on a MeshModel, whichever source produced it. Each problem names
 * the resource through the locator so TOML errors carry file:line and xDS errors the
 * resource name.
 */
import { isIP } from 'node:net';
import { MAX_CLUSTERS, MAX_ENDPOINTS, MAX_LISTENERS, MAX_ROUTE_CLUSTERS } from '../abi/kernel.js';
import { encodeAddr } from './address.js';
import { HTTP_TOKEN, hashClusterProblem, hashHeaderName, hashPolicyProblems } from './hash-policy.js';
import { L7_LIMITS } from './l7-limits.js';
import {
  type Cluster,
  type HeaderMatcher,
  type HttpRoute,
  LB_POLICIES,
  type Listener,
  type MeshModel,
  type PathMatcher,
  PROTOCOLS,
  type Protocol,
  type VirtualHost,
  type WeightedCluster,
} from './types.js';
import { resilienceProblems } from './validate-resilience.js';

export const MAX_WEIGHT = 1_000_000;
/** The documented ranges (README, Limits): file readers and these checks state them alike. */
export const PORT_RANGE = { min: 1, max: 65535 } as const;
export const WEIGHT_RANGE = { min: 1, max: MAX_WEIGHT } as const;
export const outOfRange = (range: { min: number; max: number }, got: unknown): string =>
  `must be an integer ${range.min}..${range.max}, got ${got}`;
/** Clusters one listener can route to: the kernel's array length (bpf/kmesh_maps.h). */
export { MAX_ROUTE_CLUSTERS } from '../abi/kernel.js';

export interface ModelLocator {
  listener(index: number, key?: string): string;
  cluster(index: number, key?: string): string;
}

export const byName = (model: MeshModel): ModelLocator => ({
  listener: (i, key) => `listener "${model.listeners[i]?.name}"${key ? ` ${key}` : ''}`,
  cluster: (i, key) => `cluster "${model.clusters[i]?.name}"${key ? ` ${key}` : ''}`,
});

/** TCP and HTTP share the kernel's TCP hook, so they clash on one address and port. */
export function l4Protocol(protocol: Protocol): 'tcp' | 'udp' {
  return protocol === 'udp' ? 'udp' : 'tcp';
}

/** One spelling per address (::ffff:127.0.0.1 is 127.0.0.1; FD00::1 is fd00::1), as the kernel map sees it. */
export function addressKey(address: string): string {
  let key = addressKeys.get(address);
  if (key === undefined) {
    if (addressKeys.size >= MAX_REMEMBERED) addressKeys.clear();
    key = validAddress(address) ? encodeAddr(address).toString('hex') : address;
    addressKeys.set(address, key);
  }
  return key;
}
/** Addresses repeat from apply to apply (bounded: cleared when large). */
const addressKeys = new Map<string, string>();
const MAX_REMEMBERED = 100_000;

/** Zone ids (fe80::1%eth0) have no place in a map key: refuse them rather than drop them. */
const validAddress = (address: string) => isIP(address) !== 0 && !address.includes('%');
const U32_MAX = 0xffffffff;

const inRange = (range: { min: number; max: number }, n: number) =>
  Number.isInteger(n) && n >= range.min && n <= range.max;
const validPort = (port: number) => inRange(PORT_RANGE, port);
const validWeight = (weight: number) => inRange(WEIGHT_RANGE, weight);

/** The kernel key a listener binds: two listeners with one bound key clash; TOML's shadows xDS's. */
export function boundKey(listener: Pick<Listener, 'address' | 'port' | 'protocol'>): string {
  return `${addressKey(listener.address)}|${listener.port}|${l4Protocol(listener.protocol)}`;
}

const addressInUse = (listener: Listener, other: string) =>
  `${listener.address}:${listener.port}/${l4Protocol(listener.protocol)} is already used by listener "${other}"`;

/** Every cluster a listener sends to: its default route's and its HTTP routes' (each name once). */
export function listenerClusterNames(listener: Listener): string[] {
  const names = new Set(listener.routes.map((r) => r.cluster));
  for (const vh of listener.virtualHosts ?? [])
    for (const r of vh.routes) for (const c of r.clusters) names.add(c.cluster);
  return [...names];
}

/** Where a listener names its i-th cluster (`cluster` for a plain one). */
export const routeKey = (listener: Listener, i: number) => choiceKey(listener.routes, i);
const choiceKey = (choice: WeightedCluster[], i: number) => (choice.length > 1 ? `weighted_clusters[${i}]` : 'cluster');

/** One cluster on its own; `at(key)` names the place of a problem. */
export function clusterProblems(cluster: Cluster, at: (key: string) => string): string[] {
  const errors: string[] = [];
  if (!cluster.name) errors.push(`${at('name')}: is empty`);
  if (!LB_POLICIES.includes(cluster.lbPolicy)) {
    errors.push(`${at('lb_policy')}: must be one of ${LB_POLICIES.join(', ')}`);
  }
  if (cluster.endpoints.length === 0) errors.push(`${at('endpoints')}: the endpoint set is empty`);
  cluster.endpoints.forEach((ep, j) => {
    // Located only on a problem: finding a key's line scans the file.
    const where = (key: string) => at(`endpoints[${j}].${key}`);
    if (!validAddress(ep.address)) errors.push(`${where('address')}: not an IP address literal: "${ep.address}"`);
    if (!validPort(ep.port)) errors.push(`${where('port')}: ${outOfRange(PORT_RANGE, ep.port)}`);
    if (!validWeight(ep.weight)) errors.push(`${where('weight')}: ${outOfRange(WEIGHT_RANGE, ep.weight)}`);
  });
  const totalWeight = cluster.endpoints.reduce((sum, ep) => sum + ep.weight, 0);
  // Out-of-range weights were named one by one; their sum would only repeat them.
  if (errors.length === 0 && totalWeight > U32_MAX) {
    errors.push(`${at('endpoints')}: the endpoint weights add up to ${totalWeight}, more than ${U32_MAX}`);
  }
  errors.push(...resilienceProblems(cluster, at));
  return errors;
}

/**
 * One listener, its clusters as `clusterExists` knows them and, when another listener already binds its
 * address (see boundKey), that listener's name.
 */
export function listenerProblems(
  listener: Listener,
  at: (key: string) => string,
  clusterExists: (name: string) => boolean,
  boundBy?: string,
): string[] {
  const errors: string[] = [];
  if (!listener.name) errors.push(`${at('name')}: is empty`);
  if (!validAddress(listener.address)) {
    errors.push(`${at('address')}: not an IP address literal: "${listener.address}"`);
  }
  if (!validPort(listener.port)) errors.push(`${at('port')}: ${outOfRange(PORT_RANGE, listener.port)}`);
  if (!PROTOCOLS.includes(listener.protocol)) {
    errors.push(`${at('protocol')}: must be one of ${PROTOCOLS.join(', ')}`);
  }
  if (boundBy !== undefined) errors.push(`${at('address')}: ${addressInUse(listener, boundBy)}`);
  const keyed = [
    ...clusterChoiceProblems(listener.routes, clusterExists, '', MAX_ROUTE_CLUSTERS),
    ...httpRouteProblems(listener, clusterExists),
  ];
  for (const p of keyed) errors.push(`${at(p.key)}: ${p.problem}`);
  return errors;
}

export function validateModel(model: MeshModel, at: ModelLocator = byName(model)): string[] {
  const errors: string[] = [];
  const clusterNames = new Set<string>();
  model.clusters.forEach((cluster, i) => {
    const where = (key: string) => at.cluster(i, key);
    if (clusterNames.has(cluster.name)) errors.push(`${where('name')}: duplicate cluster name "${cluster.name}"`);
    clusterNames.add(cluster.name);
    errors.push(...clusterProblems(cluster, where));
  });

  const listenerNames = new Set<string>();
  const boundAddresses = new Map<string, string>();
  model.listeners.forEach((listener, i) => {
    const where = (key: string) => at.listener(i, key);
    if (listenerNames.has(listener.name)) errors.push(`${where('name')}: duplicate listener name "${listener.name}"`);
    listenerNames.add(listener.name);
    const other = boundAddresses.get(boundKey(listener));
    if (other === undefined) boundAddresses.set(boundKey(listener), listener.name);
    errors.push(...listenerProblems(listener, where, (name) => clusterNames.has(name), other));
  });
  errors.push(...httpModelProblems(model, at));
  return errors;
}

const count = (n: number) => n.toLocaleString('en-US');

/**
 * What can never fit the maps, whatever is live: named at the first entry beyond the capacity. A file
 * is judged by it before anything is applied (--check says the same); the reconciler checks every apply
 * against what is live (an endpoint set being replaced counts twice, xDS adds its own).
 */
export function capacityProblems(model: MeshModel, at: ModelLocator): string[] {
  const problems: string[] = [];
  if (model.listeners.length > MAX_LISTENERS) {
    problems.push(
      `${at.listener(MAX_LISTENERS)}: ${count(model.listeners.length)} listeners exceed the listener map capacity of ${count(MAX_LISTENERS)}`,
    );
  }
  if (model.clusters.length > MAX_CLUSTERS) {
    problems.push(
      `${at.cluster(MAX_CLUSTERS)}: ${count(model.clusters.length)} clusters exceed the cluster map capacity of ${count(MAX_CLUSTERS)}`,
    );
  }
  let endpoints = 0;
  for (const [i, cluster] of model.clusters.entries()) {
    endpoints += cluster.endpoints.length;
    if (endpoints > MAX_ENDPOINTS) {
      const total = model.clusters.reduce((n, c) => n + c.endpoints.length, 0);
      problems.push(
        `${at.cluster(i, 'endpoints')}: ${count(total)} endpoints exceed the endpoint map capacity of ${count(MAX_ENDPOINTS)} (from here on)`,
      );
      break;
    }
  }
  return problems;
}

/** A problem at a key relative to the resource that holds it (`virtual_hosts[0].routes[2].match.path`). */
export interface KeyedProblem {
  key: string;
  problem: string;
}

/** Whether a cluster exists; undefined when the source checks clusters elsewhere (xDS warming). */
type ClusterExists = ((name: string) => boolean) | undefined;

/** `cluster` or `weighted_clusters` of a listener or route: `prefix` is the key of whatever holds them. */
function clusterChoiceProblems(
  choice: WeightedCluster[],
  clusterExists: ClusterExists,
  prefix: string,
  maxClusters: number,
): KeyedProblem[] {
  const problems: KeyedProblem[] = [];
  if (choice.length === 0) problems.push({ key: `${prefix}weighted_clusters`, problem: 'names no cluster' });
  if (choice.length > maxClusters) {
    problems.push({
      key: `${prefix}weighted_clusters`,
      problem: `at most ${maxClusters} clusters, got ${choice.length}`,
    });
  }
  choice.forEach((c, j) => {
    const key = `${prefix}${choiceKey(choice, j)}`;
    if (clusterExists && !clusterExists(c.cluster)) problems.push({ key, problem: `unknown cluster "${c.cluster}"` });
    if (!validWeight(c.weight)) {
      problems.push({ key: `${key}.weight`, problem: outOfRange(WEIGHT_RANGE, c.weight) });
    }
  });
  return problems;
}

/** An http listener's routes on their own (the per-listener kernel limits included). */
function httpRouteProblems(listener: Listener, clusterExists: ClusterExists): KeyedProblem[] {
  if (listener.virtualHosts === undefined) return [];
  if (listener.protocol !== 'http') {
    return [{ key: 'virtual_hosts', problem: `HTTP routes need protocol "http", not "${listener.protocol}"` }];
  }
  return virtualHostProblems(listener.virtualHosts, clusterExists);
}

/**
 * What HTTP routes ask of the kernel across resources: the endpoint tables of the clusters they send to, and the
 * route maps all listeners share (fixed sizes).
 */
function httpModelProblems(model: MeshModel, at: ModelLocator): string[] {
  const errors: string[] = [];
  const endpoints = new Map(model.clusters.map((c) => [c.name, c.endpoints.length]));
  const clusters = new Map(model.clusters.map((c) => [c.name, c]));
  const totals = { listeners: 0, virtualHosts: 0, domains: 0 };
  model.listeners.forEach((listener, i) => {
    const vhosts = listener.virtualHosts;
    if (!vhosts) return;
    for (const [k, vh] of vhosts.entries()) {
      for (const [j, r] of vh.routes.entries()) {
        const inert = listener.source === 'toml' ? hashClusterProblem(r, clusters) : undefined;
        if (inert && r.hashPolicy) {
          errors.push(`${at.listener(i, `virtual_hosts[${k}].routes[${j}].hash_key.${r.hashPolicy.kind}`)}: ${inert}`);
        }
        for (const [n, c] of r.clusters.entries()) {
          const count = endpoints.get(c.cluster) ?? 0;
          if (count <= L7_LIMITS.endpointsPerCluster) continue;
          const key = `virtual_hosts[${k}].routes[${j}].${choiceKey(r.clusters, n)}`;
          errors.push(
            `${at.listener(i, key)}: cluster "${c.cluster}" has ${count} endpoints; HTTP routes send to clusters of at most ${L7_LIMITS.endpointsPerCluster}`,
          );
        }
      }
    }
    totals.listeners++;
    totals.virtualHosts += vhosts.length;
    totals.domains += vhosts.reduce((n, vh) => n + vh.domains.length, 0);
    const over = (
      [
        ['listeners', totals.listeners, 'listeners with HTTP routes'],
        ['virtualHosts', totals.virtualHosts, 'virtual hosts'],
        ['domains', totals.domains, 'virtual host domains'],
      ] as const
    ).find(([limit, n]) => n > L7_LIMITS[limit]);
    if (over) {
      errors.push(
        `${at.listener(i, 'virtual_hosts')}: more than ${L7_LIMITS[over[0]]} ${over[2]} in all (kernel map size)`,
      );
    }
  });
  return errors;
}

/**
 * Header names (not :method, :authority, host) the kernel captures from a request for the routes of one listener:
 * those matched on and those hashed (Cookie for a cookie).
 */
function capturedHeaderNames(vhosts: VirtualHost[]): Set<string> {
  const names = new Set<string>();
  for (const vh of vhosts) {
    for (const r of vh.routes) {
      for (const h of r.match.headers) if (!PSEUDO_HEADERS.includes(h.name)) names.add(h.name);
      const hashed = r.hashPolicy && hashHeaderName(r.hashPolicy);
      if (hashed && hashed !== 'host') names.add(hashed);
    }
  }
  return names;
}

/**
 * Shape and kernel limits of a listener's virtual hosts. Without `clusterExists` the clusters are not looked up
 * (xDS checks a route table before its clusters have warmed).
 */
export function virtualHostProblems(vhosts: VirtualHost[], clusterExists?: ClusterExists): KeyedProblem[] {
  const problems: KeyedProblem[] = [];
  if (vhosts.length === 0) problems.push({ key: 'virtual_hosts', problem: 'is empty' });
  const names = capturedHeaderNames(vhosts);
  if (names.size > L7_LIMITS.headerNamesPerListener) {
    problems.push({
      key: 'virtual_hosts',
      problem: `the routes match on ${names.size} different header names (${[...names].join(', ')}); at most ${L7_LIMITS.headerNamesPerListener} per listener`,
    });
  }
  const domainOwner = new Map<string, number>();
  vhosts.forEach((vh, i) => {
    const at = `virtual_hosts[${i}].`;
    vh.domains.forEach((d, j) => {
      const other = domainOwner.get(d);
      if (other !== undefined) {
        problems.push({ key: `${at}domains[${j}]`, problem: `"${d}" is already a domain of virtual_hosts[${other}]` });
      } else domainOwner.set(d, i);
    });
    for (const p of vhostProblems(vh, clusterExists)) problems.push({ key: `${at}${p.key}`, problem: p.problem });
  });
  return problems;
}

function vhostProblems(vh: VirtualHost, clusterExists: ClusterExists): KeyedProblem[] {
  const problems: KeyedProblem[] = [];
  if (!vh.name) problems.push({ key: 'name', problem: 'is empty' });
  if (vh.domains.length === 0) problems.push({ key: 'domains', problem: 'names no domain' });
  vh.domains.forEach((d, j) => {
    const problem = domainProblem(d);
    if (problem) problems.push({ key: `domains[${j}]`, problem });
  });
  if (vh.routes.length === 0) problems.push({ key: 'routes', problem: 'is empty' });
  if (vh.routes.length > L7_LIMITS.routesPerVirtualHost) {
    problems.push({
      key: 'routes',
      problem: `at most ${L7_LIMITS.routesPerVirtualHost} routes per virtual host, got ${vh.routes.length}`,
    });
  }
  vh.routes.forEach((route, j) => {
    for (const p of routeProblems(route, clusterExists))
      problems.push({ key: `routes[${j}].${p.key}`, problem: p.problem });
  });
  return problems;
}

function routeProblems(route: HttpRoute, clusterExists: ClusterExists): KeyedProblem[] {
  const problems: KeyedProblem[] = [];
  const push = (key: string, problem: string | undefined) => {
    if (problem) problems.push({ key, problem });
  };
  if (!route.name) push('name', 'is empty');
  const { path, method, headers } = route.match;
  if (path) push(`match.${PATH_KEYS[path.kind]}`, pathProblem(path));
  if (method !== undefined) push('match.method', methodProblem(method));
  const matchers = headers.length + (method !== undefined ? 1 : 0);
  if (matchers > L7_LIMITS.headersPerRoute) {
    push(
      'match.headers',
      `at most ${L7_LIMITS.headersPerRoute} header matches per route (the method counts as one), got ${matchers}`,
    );
  }
  headers.forEach((h, k) => {
    for (const p of headerProblems(h)) push(`match.headers[${k}].${p.key}`, p.problem);
  });
  if (route.hashPolicy) problems.push(...hashPolicyProblems(route.hashPolicy));
  problems.push(...clusterChoiceProblems(route.clusters, clusterExists, '', L7_LIMITS.clustersPerRoute));
  return problems;
}

/** The TOML key of each path matcher kind (xDS: path, prefix, path_separated_prefix). */
export const PATH_KEYS: Record<PathMatcher['kind'], string> = {
  exact: 'path',
  prefix: 'path_prefix',
  separated_prefix: 'path_separated_prefix',
};

const utf8Bytes = (s: string) => Buffer.byteLength(s, 'utf8');

function tooLong(s: string): string | undefined {
  const n = utf8Bytes(s);
  return n > L7_LIMITS.maxStringBytes ? `longer than ${L7_LIMITS.maxStringBytes} bytes (${n})` : undefined;
}

/** Control characters can never be in a request head the kernel matches (CR/LF end it). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: that is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/;

function pathProblem(path: PathMatcher): string | undefined {
  const v = path.value;
  if (!v.startsWith('/')) return `must start with "/", got ${JSON.stringify(v)}`;
  if (/[?#\s]/.test(v) || CONTROL.test(v)) return `must not contain "?", "#", spaces or control characters`;
  if (path.kind === 'separated_prefix' && v.endsWith('/')) return `must not end with "/", got ${JSON.stringify(v)}`;
  return tooLong(v);
}

const METHOD = /^[A-Z][A-Z0-9_-]*$/;

function methodProblem(method: string): string | undefined {
  if (!METHOD.test(method)) return `not an upper-case HTTP method, got ${JSON.stringify(method)}`;
  return tooLong(method);
}

/** Header names as the kernel compares them: lower case tokens, or the two pseudo-headers it knows. */
const isHeaderName = (name: string) => HTTP_TOKEN.test(name) && name === name.toLowerCase();
const PSEUDO_HEADERS = [':method', ':authority'];

function headerProblems(h: HeaderMatcher): KeyedProblem[] {
  const problems: KeyedProblem[] = [];
  if (!isHeaderName(h.name) && !PSEUDO_HEADERS.includes(h.name)) {
    problems.push({
      key: 'name',
      problem: `not a lower-case header name (or ${PSEUDO_HEADERS.join(', ')}), got ${JSON.stringify(h.name)}`,
    });
  } else {
    const long = tooLong(h.name);
    if (long) problems.push({ key: 'name', problem: long });
  }
  const m = h.matcher;
  if (m.kind === 'present') return problems;
  const problem =
    m.value === '' && m.kind !== 'exact'
      ? `is empty (a ${m.kind} of "" matches any value: use present)`
      : CONTROL.test(m.value)
        ? 'must not contain control characters'
        : tooLong(m.value);
  if (problem) problems.push({ key: m.kind, problem });
  return problems;
}

/**
 * `*`, `*<suffix>`, `<prefix>*` or an exact name, lower case, optionally `:port`; IPv6 literals in brackets.
 * Returns what is wrong, or undefined.
 */
export function domainProblem(domain: string): string | undefined {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(domain);
  const host = m?.[1];
  if (!m || host === undefined) {
    return isIP(domain) === 6
      ? `an IPv6 address is written in brackets: "[${domain}]"`
      : `not a host name with an optional :port: ${JSON.stringify(domain)}`;
  }
  if (m[2] !== undefined && !validPort(Number(m[2]))) return `port must be 1..65535, got ${m[2]}`;
  if (host.startsWith('[')) {
    if (isIP(host.slice(1, -1)) !== 6) return `not an IPv6 address in brackets: ${JSON.stringify(host)}`;
  } else if (host !== '*') {
    if (host !== host.toLowerCase()) return `must be lower case, got ${JSON.stringify(domain)}`;
    const name = host.startsWith('*') ? host.slice(1) : host.endsWith('*') ? host.slice(0, -1) : host;
    if (!/^[a-z0-9_.-]+$/.test(name)) {
      return `a wildcard "*" stands alone, first or last; the rest is letters, digits, ".", "-", "_": ${JSON.stringify(domain)}`;
    }
  }
  return tooLong(domain);
}
