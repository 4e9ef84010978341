/**
 * Limits of the kernel's L7 routing, as bpf/kmesh_l7.h defines them (test/unit/l7-limits.test.ts
 * holds the two together). Config validation (TOML and xDS) refuses a route table over them.
 */
import { L7_HASH_NAME_MAX, L7_HASH_VALUE_MAX } from '../abi/kernel.js';

export const L7_LIMITS = {
  /** Routes per virtual host. */
  routesPerVirtualHost: 16,
  /** Header matchers per route; a method match counts as one, a path match does not. */
  headersPerRoute: 8,
  /** Distinct header names (other than :method, :authority) the routes of one listener match on. */
  headerNamesPerListener: 8,
  /** Longest path/Host/header/method string matched, and longest configured value. */
  maxStringBytes: 128,
  /** Bytes of a connection's first request scanned for the request line and headers. */
  maxParseBytes: 2048,
  /** Endpoints of a cluster that L7 routes send to. */
  endpointsPerCluster: 64,
  /** Weighted clusters per route. */
  clustersPerRoute: 16,
  /** Listeners with routes, virtual hosts and domains in total (map capacities). */
  listeners: 1024,
  virtualHosts: 4096,
  domains: 16384,
} as const;

/** The C name of each limit in bpf/kmesh_l7.h. */
export const L7_LIMIT_MACROS: Record<keyof typeof L7_LIMITS, string> = {
  routesPerVirtualHost: 'KMESH_L7_MAX_ROUTES',
  headersPerRoute: 'KMESH_L7_MAX_ROUTE_HEADERS',
  headerNamesPerListener: 'KMESH_L7_MAX_HEADER_NAMES',
  maxStringBytes: 'KMESH_L7_MAX_STRING',
  maxParseBytes: 'KMESH_L7_MAX_PARSE',
  endpointsPerCluster: 'KMESH_L7_MAX_CLUSTER_ENDPOINTS',
  clustersPerRoute: 'KMESH_L7_MAX_ROUTE_CLUSTERS',
  listeners: 'KMESH_L7_MAX_LISTENERS',
  virtualHosts: 'KMESH_L7_MAX_VHOSTS',
  domains: 'KMESH_L7_MAX_DOMAINS',
};

/** Route hash policies (enum kmesh_l7_limits in bpf/kmesh_l7.h, read from BTF at build time). */
export const L7_HASH_LIMITS = {
  /** Longest header or cookie name. */
  nameBytes: L7_HASH_NAME_MAX,
  /** Header value bytes hashed; Cookie header bytes searched for the named cookie. */
  valueBytes: L7_HASH_VALUE_MAX,
} as const;
