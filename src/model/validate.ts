/**
 * Semantic checks on a MeshModel, whichever source produced it. Each problem names
 * the resource through the locator so TOML errors carry file:line and xDS errors the
 * resource name.
 */
import { isIP } from 'node:net';
import { MAX_ROUTE_CLUSTERS } from '../abi/kernel.js';
import { encodeAddr } from './address.js';
import { type Cluster, LB_POLICIES, type Listener, type MeshModel, PROTOCOLS, type Protocol } from './types.js';

export const MAX_WEIGHT = 1_000_000;
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

const validPort = (port: number) => Number.isInteger(port) && port >= 1 && port <= 65535;
const validWeight = (weight: number) => Number.isInteger(weight) && weight >= 1 && weight <= MAX_WEIGHT;

/** The kernel key a listener binds: two listeners with one bound key clash; TOML's shadows xDS's. */
export function boundKey(listener: Pick<Listener, 'address' | 'port' | 'protocol'>): string {
  return `${addressKey(listener.address)}|${listener.port}|${l4Protocol(listener.protocol)}`;
}

const addressInUse = (listener: Listener, other: string) =>
  `${listener.address}:${listener.port}/${l4Protocol(listener.protocol)} is already used by listener "${other}"`;

/** Where a listener names its i-th cluster (`cluster` for a plain one). */
export const routeKey = (listener: Listener, i: number) =>
  listener.routes.length > 1 ? `weighted_clusters[${i}]` : 'cluster';

/** One cluster on its own; `at(key)` names the place of a problem. */
export function clusterProblems(cluster: Cluster, at: (key: string) => string): string[] {
  const errors: string[] = [];
  if (!cluster.name) errors.push(`${at('name')}: is empty`);
  if (!LB_POLICIES.includes(cluster.lbPolicy)) {
    errors.push(`${at('lb_policy')}: must be one of ${LB_POLICIES.join(', ')}`);
  }
  if (cluster.endpoints.length === 0) errors.push(`${at('endpoints')}: the endpoint set is empty`);
  cluster.endpoints.forEach((ep, j) => {
    const where = at(`endpoints[${j}]`);
    if (!validAddress(ep.address)) errors.push(`${where}.address: not an IP address literal: "${ep.address}"`);
    if (!validPort(ep.port)) errors.push(`${where}.port: must be 1..65535, got ${ep.port}`);
    if (!validWeight(ep.weight)) errors.push(`${where}.weight: must be an integer 1..${MAX_WEIGHT}, got ${ep.weight}`);
  });
  const totalWeight = cluster.endpoints.reduce((sum, ep) => sum + ep.weight, 0);
  if (totalWeight > U32_MAX) {
    errors.push(`${at('endpoints')}: the endpoint weights add up to ${totalWeight}, more than ${U32_MAX}`);
  }
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
  if (!validPort(listener.port)) errors.push(`${at('port')}: must be 1..65535, got ${listener.port}`);
  if (!PROTOCOLS.includes(listener.protocol)) {
    errors.push(`${at('protocol')}: must be one of ${PROTOCOLS.join(', ')}`);
  }
  if (boundBy !== undefined) errors.push(`${at('address')}: ${addressInUse(listener, boundBy)}`);
  if (listener.routes.length === 0) errors.push(`${at('weighted_clusters')}: names no cluster`);
  if (listener.routes.length > MAX_ROUTE_CLUSTERS) {
    errors.push(`${at('weighted_clusters')}: at most ${MAX_ROUTE_CLUSTERS} clusters, got ${listener.routes.length}`);
  }
  listener.routes.forEach((route, j) => {
    if (!clusterExists(route.cluster)) errors.push(`${at(routeKey(listener, j))}: unknown cluster "${route.cluster}"`);
    if (!validWeight(route.weight)) {
      errors.push(`${at(routeKey(listener, j))}.weight: must be an integer 1..${MAX_WEIGHT}, got ${route.weight}`);
    }
  });
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
  return errors;
}
