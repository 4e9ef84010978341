/**
 * Semantic checks on a MeshModel, whichever source produced it. Each problem names
 * the resource through the locator so TOML errors carry file:line and xDS errors the
 * resource name.
 */
import { isIP } from 'node:net';
import { encodeAddr } from '../runtime/maps/addr.js';
import { MAX_CLUSTERS, MAX_ENDPOINTS, MAX_LISTENERS } from '../runtime/maps/layouts.js';
import { type Cluster, LB_POLICIES, type MeshModel, PROTOCOLS, type Protocol } from './types.js';

export const MAX_WEIGHT = 1_000_000;
/** The documented ranges (README, Limits): file readers and these checks state them alike. */
export const PORT_RANGE = { min: 1, max: 65535 } as const;
export const WEIGHT_RANGE = { min: 1, max: MAX_WEIGHT } as const;
export const outOfRange = (range: { min: number; max: number }, got: unknown): string =>
  `must be an integer ${range.min}..${range.max}, got ${got}`;
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

const inRange = (range: { min: number; max: number }, n: number) =>
  Number.isInteger(n) && n >= range.min && n <= range.max;
const validPort = (port: number) => inRange(PORT_RANGE, port);
const validWeight = (weight: number) => inRange(WEIGHT_RANGE, weight);

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
      if (!validPort(ep.port)) errors.push(`${where}.port: ${outOfRange(PORT_RANGE, ep.port)}`);
      if (!validWeight(ep.weight)) errors.push(`${where}.weight: ${outOfRange(WEIGHT_RANGE, ep.weight)}`);
    });
    const totalWeight = cluster.endpoints.reduce((sum, ep) => sum + ep.weight, 0);
    if (errors.length === before && totalWeight > U32_MAX) {
      errors.push(`${at.cluster(i, 'endpoints')}: the endpoint weights add up to ${totalWeight}, more than ${U32_MAX}`);
    }
    if (errors.length === before) validEndpointSets.add(cluster.endpoints);
  });

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
    if (!validPort(listener.port)) errors.push(`${at.listener(i, 'port')}: ${outOfRange(PORT_RANGE, listener.port)}`);
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

    if (listener.routes.length === 0) errors.push(`${at.listener(i, 'weighted_clusters')}: names no cluster`);
    if (listener.routes.length > MAX_ROUTE_CLUSTERS) {
      errors.push(
        `${at.listener(i, 'weighted_clusters')}: at most ${MAX_ROUTE_CLUSTERS} clusters, got ${listener.routes.length}`,
      );
    }
    listener.routes.forEach((route, j) => {
      const key = listener.routes.length > 1 ? `weighted_clusters[${j}]` : 'cluster';
      if (!clusterNames.has(route.cluster)) errors.push(`${at.listener(i, key)}: unknown cluster "${route.cluster}"`);
      if (!validWeight(route.weight)) {
        errors.push(`${at.listener(i, key)}.weight: ${outOfRange(WEIGHT_RANGE, route.weight)}`);
      }
    });
  });
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
