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

/**
 * Ejection of endpoints whose connections fail (refused, timed out, reset), decided in the kernel
 * (Envoy's consecutive local-origin failures at L4).
 */
export interface OutlierDetection {
  /** Failures in a row that eject an endpoint. */
  consecutiveFailures: number;
  /** Ejected for this × times ejected, up to maxEjectionTimeMs. */
  baseEjectionTimeMs: number;
  maxEjectionTimeMs: number;
  /** Share of the cluster's endpoints ejected at once (at least one). */
  maxEjectionPercent: number;
  /** An ejection-free stretch of interval × times ejected starts the multiplier over. */
  intervalMs: number;
}

/** What a consistent hash (maglev, ring_hash) hashes at connect time. */
export const HASH_KEYS = ['cgroup', 'source_address', 'cgroup_and_source_address'] as const;
export type HashKey = (typeof HASH_KEYS)[number];

export interface LocalityWeight {
  locality: Locality;
  /** Positive integer: the locality's share within its priority level. */
  weight: number;
}

/** Istio's `failover` entry: from the daemon's region, fail over to this region before any other. */
export interface RegionFailover {
  from: string;
  to: string;
}

/** One of Istio's `failoverPriority` labels, as the part of a locality it names. */
export interface FailoverPriorityLabel {
  /** As written (for messages and dumps). */
  label: string;
  part: keyof Locality;
  /** `label=value`: compared instead of the daemon's own value. */
  value?: string;
}

/**
 * Ranks endpoints by the daemon's own locality as istiod does. Default: its subzone, then its zone, then its
 * region, then the rest. `regions` puts a region's `to` before the rest; `priority` ranks by the labels instead
 * (all match first, then all but the last, …), with `regions` within each of those ranks.
 */
export interface LocalityFailover {
  own: Locality;
  regions?: RegionFailover[];
  priority?: FailoverPriorityLabel[];
}

export interface Cluster {
  name: string;
  lbPolicy: LbPolicy;
  endpoints: Endpoint[];
  source: ResourceSource;
  outlierDetection?: OutlierDetection;
  /** Connections (connecting or established) at once; beyond it connect() fails with ECONNREFUSED. */
  maxConnections?: number;
  connectTimeoutMs?: number;
  /** L7 circuit breaker: first requests waiting for an upstream connect (the slow path) at once; beyond it 503. */
  maxPendingRequests?: number;
  /** L7 circuit breaker: routed HTTP connections (one request in flight each) at once; beyond it 503. */
  maxRequests?: number;
  /** maglev and ring_hash only; default cgroup. */
  hashKey?: HashKey;
  /** Locality-weighted load balancing: endpoints of a locality share its weight. */
  localityWeights?: LocalityWeight[];
  /** Failover by locality (Istio's localityLbSetting): within each priority, levels by closeness to the daemon. */
  localityFailover?: LocalityFailover;
  /** Envoy's overprovisioning factor in percent (the CLA's policy; 140 when absent). */
  overprovisioningFactor?: number;
  /** Settings the source gave that the kernel does not enforce, said plainly (e.g. max_requests). */
  unenforced?: string[];
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

/** How a request field is compared (HTTP header values; names are matched case-insensitively). */
export type StringMatcher =
  | { kind: 'exact'; value: string }
  | { kind: 'prefix'; value: string }
  | { kind: 'suffix'; value: string }
  | { kind: 'present' };

export interface HeaderMatcher {
  /** Lower case. `:method` and `:authority` are the request line's method and the Host header. */
  name: string;
  matcher: StringMatcher;
  /**
   * Match when the matcher does not (an inverted `present` = the header is absent). As in Envoy, a missing header
   * matches no matcher but an inverted `present`.
   */
  invert: boolean;
}

/** `separated_prefix` is Envoy's path_separated_prefix: the prefix followed by `/`, `?` or the end of the path. */
export interface PathMatcher {
  kind: 'exact' | 'prefix' | 'separated_prefix';
  value: string;
}

/** Every part that is present must match. */
export interface RouteMatch {
  path?: PathMatcher;
  /** Upper case, e.g. GET. */
  method?: string;
  headers: HeaderMatcher[];
}

/**
 * Where a route's consistent-hash key comes from when its cluster is maglev / ring_hash (Envoy's
 * RouteAction.hash_policy `header` / `cookie`): a header's value, or one cookie's value in the Cookie header.
 */
export interface RouteHashPolicy {
  kind: 'header' | 'cookie';
  /** Header names in lower case; cookie names as written (they are case-sensitive). */
  name: string;
}

export interface HttpRoute {
  name: string;
  match: RouteMatch;
  /** One entry for a plain cluster; several for a gray release split of this route. */
  clusters: WeightedCluster[];
  hashPolicy?: RouteHashPolicy;
}

/** Ordered routes for a set of domains: exact, `*.suffix`, `prefix.*`, `*`, each optionally with `:port`. */
export interface VirtualHost {
  name: string;
  domains: string[];
  /** First match wins. */
  routes: HttpRoute[];
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
  /**
   * protocol "http" only: requests are routed by their first request in the kernel. Absent: connect-time steering
   * by `routes`, as for tcp. When present, `routes` is the default for connections that are not HTTP/1.x.
   */
  virtualHosts?: VirtualHost[];
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
