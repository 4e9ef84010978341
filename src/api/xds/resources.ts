/**
 * Decoded xDS resources, reduced to what conversion needs. Decoding validates: a resource that cannot be used
 * safely raises XdsResourceError, which the client turns into a NACK of the whole response (SotW has no partial
 * acceptance), keeping the previous version.
 */
import type {
  Endpoint,
  LbPolicy,
  LocalityWeight,
  Protocol,
  UnenforcedRoute,
  VirtualHost,
  WeightedCluster,
} from '../../model/types.js';
import type { ClusterResilience } from './cluster-resilience.js';

export class XdsResourceError extends Error {
  override name = 'XdsResourceError';
}

/** An endpoint before DNS: `host` is an IP literal, or a hostname for STRICT_DNS/LOGICAL_DNS clusters. */
export interface RawEndpoint extends Omit<Endpoint, 'address'> {
  host: string;
}

export interface XCluster {
  name: string;
  /** 'unsupported' clusters (ORIGINAL_DST, custom types) are left out of the model; listeners on them never warm. */
  kind: 'eds' | 'static' | 'dns' | 'unsupported';
  /** EDS resource name: eds_cluster_config.service_name, or the cluster name. */
  edsName?: string;
  lbPolicy: LbPolicy;
  endpoints: RawEndpoint[];
  resilience: ClusterResilience;
  /** STATIC/DNS clusters: locality weights of the inline load assignment. */
  localityWeights?: LocalityWeight[];
  /** STATIC/DNS clusters: the inline load assignment's policy.overprovisioning_factor. */
  overprovisioningFactor?: number;
  reason?: string;
}

export interface XLoadAssignment {
  name: string;
  endpoints: Endpoint[];
  /** load_balancing_weight per locality, when every locality has one. */
  localityWeights?: LocalityWeight[];
  /** policy.overprovisioning_factor, percent. */
  overprovisioningFactor?: number;
}

export type XTarget =
  | { kind: 'clusters'; routes: WeightedCluster[] }
  | { kind: 'rds'; name: string }
  | { kind: 'inline'; config: XRouteConfig };

/** One (filter chain × address) of a listener. `addresses` empty means the chain matches any destination address. */
export interface XListenerEntry {
  addresses: string[];
  port: number;
  protocol: Protocol;
  target: XTarget;
}

export interface XListener {
  name: string;
  entries: XListenerEntry[];
  /** Why nothing of this listener is programmed (inbound, pipe, ...), for the debug log. */
  skipped?: string;
}

export interface XVirtualHost {
  name: string;
  domains: string[];
  /**
   * Where connections go at connect time: the one destination of the whole virtual host, or its catch-all route
   * when it has L7 routes (then the default for connections that are not HTTP/1.x).
   */
  l4?: WeightedCluster[];
  /** The routes the kernel matches per connection's first request (domains `*`: the VIP already chose the host). */
  http?: VirtualHost;
  unenforced: UnenforcedRoute[];
}

export interface XRouteConfig {
  name: string;
  vhosts: XVirtualHost[];
}
