/**
 * The normalized orchestration model. Both config sources (TOML and xDS) produce it;
 * the reconciler turns it into map entries. Names here are what users see in dumps.
 */

export const LB_POLICIES = ['round_robin', 'random', 'least_request', 'maglev', 'ring_hash'] as const;
export type LbPolicy = (typeof LB_POLICIES)[number];

export const PROTOCOLS = ['tcp', 'udp', 'http'] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** Where a resource came from; TOML wins over xDS on a name or address clash. */
export type ResourceSource = 'toml' | 'xds';

export interface Locality {
  region?: string;
  zone?: string;
  subZone?: string;
}

export interface Endpoint {
  /** IPv4 or IPv6 literal. */
  address: string;
  port: number;
  /** Positive integer. */
  weight: number;
  locality?: Locality;
  priority?: number;
}

export interface Cluster {
  name: string;
  lbPolicy: LbPolicy;
  endpoints: Endpoint[];
  source: ResourceSource;
  /** Kept from xDS for dumps; not enforced in the kernel. */
  circuitBreakers?: unknown;
  outlierDetection?: unknown;
}

export interface WeightedCluster {
  cluster: string;
  /** Positive integer; the share is weight / sum of weights on the listener. */
  weight: number;
}

/** An L7 route kept for dumps but not enforced by the L4 data path. */
export interface UnenforcedRoute {
  description: string;
  detail: unknown;
}

export interface Listener {
  name: string;
  /** The service address apps dial; 0.0.0.0 or :: is a wildcard for the port. */
  address: string;
  port: number;
  protocol: Protocol;
  /** One entry for a plain cluster; several for a gray release split. */
  routes: WeightedCluster[];
  source: ResourceSource;
  unenforcedRoutes?: UnenforcedRoute[];
}

export interface MeshModel {
  listeners: Listener[];
  clusters: Cluster[];
}

/** A registered service: whose outbound traffic is orchestrated. Exactly one of unit/cgroup. */
export interface ServiceSpec {
  unit?: string;
  cgroup?: string;
}

export function emptyModel(): MeshModel {
  return { listeners: [], clusters: [] };
}
