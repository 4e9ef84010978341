/**
 * Semantic checks on a MeshModel, whichever source produced it. Each problem names
 * the resource through the locator so TOML errors carry file:line and xDS errors the
 * resource name.
 */
import { isIP } from 'node:net';
import { L7_LIMITS } from '../l7/limits.js';
import { encodeAddr } from '../runtime/maps/addr.js';
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

export const MAX_WEIGHT = 1_000_000;
export const MAX_ROUTE_CLUSTERS = 16;

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

const validPort = (port: number) => Number.isInteger(port) && port >= 1 && port <= 65535;
const validWeight = (weight: number) => Number.isInteger(weight) && weight >= 1 && weight <= MAX_WEIGHT;

/** Endpoint sets already found valid; a source hands over the same object while a cluster is unchanged. */
const validEndpointSets = new WeakSet<Cluster['endpoints']>();

export function validateModel(model: MeshModel, at: ModelLocator = byName(model)): string[] {
  const errors: string[] = [];
  const clusterNames = new Map<string, number>();

  model.clusters.forEach((cluster, i) => {
    if (!cluster.name) errors.push(`${at.cluster(i, 'name')}: is empty`);
    if (clusterNames.has(cluster.name)) {
      errors.push(`${at.cluster(i, 'name')}: duplicate cluster name "${cluster.name}"`);
    }
    clusterNames.set(cluster.name, i);
    if (!LB_POLICIES.includes(cluster.lbPolicy)) {
      errors.push(`${at.cluster(i, 'lb_policy')}: must be one of ${LB_POLICIES.join(', ')}`);
    }
    if (cluster.endpoints.length === 0) errors.push(`${at.cluster(i, 'endpoints')}: the endpoint set is empty`);
    if (validEndpointSets.has(cluster.endpoints)) return;
    const before = errors.length;
    cluster.endpoints.forEach((ep, j) => {
      const where = at.cluster(i, `endpoints[${j}]`);
      if (!validAddress(ep.address)) errors.push(`${where}.address: not an IP address literal: "${ep.address}"`);
      if (!validPort(ep.port)) errors.push(`${where}.port: must be 1..65535, got ${ep.port}`);
      if (!validWeight(ep.weight))
        errors.push(`${where}.weight: must be an integer 1..${MAX_WEIGHT}, got ${ep.weight}`);
    });
    const totalWeight = cluster.endpoints.reduce((sum, ep) => sum + ep.weight, 0);
    if (totalWeight > U32_MAX) {
      errors.push(`${at.cluster(i, 'endpoints')}: the endpoint weights add up to ${totalWeight}, more than ${U32_MAX}`);
    }
    if (errors.length === before) validEndpointSets.add(cluster.endpoints);
  });

  const lookup = (name: string) => model.clusters[clusterNames.get(name) ?? -1];
  const l7Totals: L7Totals = { listeners: 0, virtualHosts: 0, domains: 0 };
  const listenerNames = new Set<string>();
  const boundAddresses = new Map<string, string>();
  model.listeners.forEach((listener, i) => {
    if (!listener.name) errors.push(`${at.listener(i, 'name')}: is empty`);
    if (listenerNames.has(listener.name)) {
      errors.push(`${at.listener(i, 'name')}: duplicate listener name "${listener.name}"`);
    }
    listenerNames.add(listener.name);
    if (!validAddress(listener.address)) {
      errors.push(`${at.listener(i, 'address')}: not an IP address literal: "${listener.address}"`);
    }
    if (!validPort(listener.port)) errors.push(`${at.listener(i, 'port')}: must be 1..65535, got ${listener.port}`);
    if (!PROTOCOLS.includes(listener.protocol)) {
      errors.push(`${at.listener(i, 'protocol')}: must be one of ${PROTOCOLS.join(', ')}`);
    }
    const bound = `${addressKey(listener.address)}|${listener.port}|${l4Protocol(listener.protocol)}`;
    const other = boundAddresses.get(bound);
    if (other !== undefined) {
      errors.push(
        `${at.listener(i, 'address')}: ${listener.address}:${listener.port}/${l4Protocol(listener.protocol)} is already used by listener "${other}"`,
      );
    } else boundAddresses.set(bound, listener.name);

    const routeProblems = [
      ...clusterChoiceProblems(listener.routes, lookup, '', MAX_ROUTE_CLUSTERS),
      ...listenerRouteProblems(listener, lookup, l7Totals),
    ];
    for (const p of routeProblems) {
      errors.push(`${at.listener(i, p.key)}: ${p.problem}`);
    }
  });
  return errors;
}

/** A problem at a key relative to the resource that holds it (`virtual_hosts[0].routes[2].match.path`). */
export interface KeyedProblem {
  key: string;
  problem: string;
}

/** The model's clusters by name; undefined when the source checks clusters elsewhere (xDS warming). */
type ClusterLookup = ((name: string) => Cluster | undefined) | undefined;

/** `cluster` or `weighted_clusters` of a listener or route: `prefix` is the key of whatever holds them. */
function clusterChoiceProblems(
  choice: WeightedCluster[],
  lookup: ClusterLookup,
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
    const key = `${prefix}${choice.length > 1 ? `weighted_clusters[${j}]` : 'cluster'}`;
    if (lookup && !lookup(c.cluster)) problems.push({ key, problem: `unknown cluster "${c.cluster}"` });
    if (!validWeight(c.weight)) {
      problems.push({ key: `${key}.weight`, problem: `must be an integer 1..${MAX_WEIGHT}, got ${c.weight}` });
    }
  });
  return problems;
}

/** The kernel's route tables are maps of fixed size, shared by all listeners. */
interface L7Totals {
  listeners: number;
  virtualHosts: number;
  domains: number;
}

function listenerRouteProblems(listener: Listener, lookup: ClusterLookup, totals: L7Totals): KeyedProblem[] {
  if (listener.virtualHosts === undefined) return [];
  if (listener.protocol !== 'http') {
    return [{ key: 'virtual_hosts', problem: `HTTP routes need protocol "http", not "${listener.protocol}"` }];
  }
  const problems = virtualHostProblems(listener.virtualHosts, lookup);
  totals.listeners++;
  totals.virtualHosts += listener.virtualHosts.length;
  totals.domains += listener.virtualHosts.reduce((n, vh) => n + vh.domains.length, 0);
  const over = (
    [
      ['listeners', totals.listeners, 'listeners with HTTP routes'],
      ['virtualHosts', totals.virtualHosts, 'virtual hosts'],
      ['domains', totals.domains, 'virtual host domains'],
    ] as const
  ).find(([limit, n]) => n > L7_LIMITS[limit]);
  if (over) {
    problems.push({
      key: 'virtual_hosts',
      problem: `more than ${L7_LIMITS[over[0]]} ${over[2]} in all (kernel map size)`,
    });
  }
  return problems;
}

/** Header names (not :method, :authority) the kernel captures from a request for the routes of one listener. */
function capturedHeaderNames(vhosts: VirtualHost[]): Set<string> {
  const names = new Set<string>();
  for (const vh of vhosts) {
    for (const r of vh.routes) for (const h of r.match.headers) if (!PSEUDO_HEADERS.includes(h.name)) names.add(h.name);
  }
  return names;
}

/**
 * Shape and kernel limits of a listener's virtual hosts. Without `lookup` the clusters are not looked up
 * (xDS checks a route table before its clusters have warmed).
 */
export function virtualHostProblems(vhosts: VirtualHost[], lookup?: ClusterLookup): KeyedProblem[] {
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
    for (const p of vhostProblems(vh, lookup)) problems.push({ key: `${at}${p.key}`, problem: p.problem });
  });
  return problems;
}

function vhostProblems(vh: VirtualHost, lookup: ClusterLookup): KeyedProblem[] {
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
    for (const p of routeProblems(route, lookup)) problems.push({ key: `routes[${j}].${p.key}`, problem: p.problem });
  });
  return problems;
}

function routeProblems(route: HttpRoute, lookup: ClusterLookup): KeyedProblem[] {
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
  problems.push(...clusterChoiceProblems(route.clusters, lookup, '', L7_LIMITS.clustersPerRoute));
  route.clusters.forEach((c, j) => {
    const endpoints = lookup?.(c.cluster)?.endpoints.length ?? 0;
    if (endpoints > L7_LIMITS.endpointsPerCluster) {
      push(
        route.clusters.length > 1 ? `weighted_clusters[${j}]` : 'cluster',
        `cluster "${c.cluster}" has ${endpoints} endpoints; HTTP routes send to clusters of at most ${L7_LIMITS.endpointsPerCluster}`,
      );
    }
  });
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

/** Header names as the kernel compares them: lower case token characters, or the two pseudo-headers it knows. */
const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;
const PSEUDO_HEADERS = [':method', ':authority'];

function headerProblems(h: HeaderMatcher): KeyedProblem[] {
  const problems: KeyedProblem[] = [];
  if (!HEADER_NAME.test(h.name) && !PSEUDO_HEADERS.includes(h.name)) {
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
