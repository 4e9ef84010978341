/**
 * Route hash policies (HttpRoute.hashPolicy): what the kernel needs captured from a request for them, and their
 * rules. The value is hashed in the kernel and looked up in the cluster's maglev / ring_hash table, the one the L4
 * path reads.
 */
import { L7_HASH_LIMITS } from './l7-limits.js';
import type { Cluster, HttpRoute, RouteHashPolicy } from './types.js';

/**
 * The header the kernel captures for a policy: the named one, or the Cookie header. Lower case, as the kernel
 * compares header names (a cookie's own name is case-sensitive and stays as written).
 */
export function hashHeaderName(p: RouteHashPolicy): string {
  return p.kind === 'cookie' ? 'cookie' : p.name.toLowerCase();
}

/** RFC 9110 token: header names, and cookie names (RFC 6265). */
export const HTTP_TOKEN = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;

/** Problems of a route's policy on its own; keys relative to the route (`hash_key.header`). */
export function hashPolicyProblems(p: RouteHashPolicy): Array<{ key: string; problem: string }> {
  const key = `hash_key.${p.kind}`;
  if (p.name === '') return [{ key, problem: 'is empty: name the header or cookie whose value is hashed' }];
  if (!HTTP_TOKEN.test(p.name)) return [{ key, problem: `not a ${p.kind} name, got ${JSON.stringify(p.name)}` }];
  const n = Buffer.byteLength(p.name);
  if (n > L7_HASH_LIMITS.nameBytes) return [{ key, problem: `longer than ${L7_HASH_LIMITS.nameBytes} bytes (${n})` }];
  return [];
}

export const hashes = (c: Cluster) => c.lbPolicy === 'maglev' || c.lbPolicy === 'ring_hash';

/**
 * A policy on a route whose clusters do not hash would do nothing. Envoy ignores it then, and so do routes from
 * xDS; a file says what it means, so there it is an error naming the first such cluster.
 */
export function hashClusterProblem(route: HttpRoute, clusters: Map<string, Cluster>): string | undefined {
  if (!route.hashPolicy) return undefined;
  const plain = route.clusters.map((c) => clusters.get(c.cluster)).find((c) => c && !hashes(c));
  return plain
    ? `applies to clusters with lb_policy maglev or ring_hash; cluster "${plain.name}" is ${plain.lbPolicy}`
    : undefined;
}
