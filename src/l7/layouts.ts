/**
 * The TypeScript side of bpf/kmesh_l7.h (test/unit/l7-layouts.test.ts checks it against the
 * BTF of build/bpf/kmesh_l7.bpf.o). Nested C structs are written out flat, member by member.
 */

import { L7_LIMITS } from '../model/l7-limits.js';
import { array, bytes, StructCodec, u8, u16, u32, u64 } from '../runtime/maps/struct-codec.js';

export { L7_POOL_SLOTS } from '../abi/kernel.js';
export const L7_MATCHERS_PER_ROUTE = L7_LIMITS.headersPerRoute + 1;

/** The tail-call stages by their index in kmesh_l7_stages (enum STAGE_* in bpf/kmesh_l7.bpf.c). */
export const L7_STAGES = [
  ...Array.from({ length: 8 }, (_, i) => `kmesh_l7_parse${i}`),
  'kmesh_l7_route',
  'kmesh_l7_hash',
  'kmesh_l7_pool',
] as const;

/** Capture slots (KMESH_L7_SLOT_*). */
export const SLOT = { path: 0, host: 1, method: 2, firstHeader: 3 } as const;

export const DOMAIN_KIND = { exact: 0, suffix: 1, prefix: 2, any: 3 } as const;
export const MATCH_KIND = { exact: 0, prefix: 1, suffix: 2, present: 3, separated_prefix: 4 } as const;
/** kmesh_l7_route.hash_kind (enum kmesh_l7_hash_kind). */
export const HASH_KIND = { none: 0, header: 1, cookie: 2 } as const;
/** kmesh_l7_cluster.table_pos of an L4 endpoint index with no pool here (KMESH_L7_NO_POS). */
export const NO_POS = 0xffffffff;
export const LISTENER_FLAGS = { suffixDomains: 0x1, prefixDomains: 0x2, anyDomain: 0x4 } as const;
export const CONN_STATE = { new: 0, spliced: 1, slow: 2, draining: 3, overflow: 4 } as const;
export const NO_ROUTE = 0xffffffff;

/** kmesh_l7_counters indices (enum kmesh_l7_counter), in order. */
export const L7_COUNTERS = [
  'connections',
  'routed',
  'not_http',
  'incomplete',
  'no_route',
  'pool_hit',
  'slow_path',
  'later_mismatch',
  'no_endpoint',
  'truncated',
  'hashed',
  'hash_key_absent',
  'overflow',
] as const;

const split = {
  cluster_count: u32,
  total_weight: u32,
  cluster_ids: array(u32, L7_LIMITS.clustersPerRoute),
  cum_weights: array(u32, L7_LIMITS.clustersPerRoute),
};

export const l7Split = new StructCodec('kmesh_l7_split', split);

export const l7Listener = new StructCodec('kmesh_l7_listener', {
  listener_id: u32,
  flags: u32,
  /** network order */
  anchor_ip4: bytes(4),
  /** network order */
  anchor_port: bytes(2),
  pad: u16,
  ...split,
});

export const l7DomainKey = new StructCodec('kmesh_l7_domain_key', { hash: u64, listener_id: u32, kind: u32 });
export const l7HeaderKey = new StructCodec('kmesh_l7_header_key', { hash: u64, listener_id: u32, pad: u32 });
export const l7Vhost = new StructCodec('kmesh_l7_vhost', { route_count: u32, pad: u32 });
export const l7RouteKey = new StructCodec('kmesh_l7_route_key', { vhost_id: u32, index: u32 });

export const l7Matcher = new StructCodec('kmesh_l7_matcher', {
  hash: u64,
  len: u16,
  slot: u8,
  kind: u8,
  invert: u8,
  pad: array(u8, 3),
});

export const l7Route = new StructCodec('kmesh_l7_route', {
  route_id: u32,
  matcher_count: u32,
  matchers: bytes(l7Matcher.size * L7_MATCHERS_PER_ROUTE),
  ...split,
  hash_kind: u32,
  hash_slot: u32,
  cookie_len: u32,
  pad: u32,
  cookie_hash: u64,
});

export const l7Cluster = new StructCodec('kmesh_l7_cluster', {
  endpoint_count: u32,
  total_weight: u32,
  pool_ids: array(u32, L7_LIMITS.endpointsPerCluster),
  cum_weights: array(u32, L7_LIMITS.endpointsPerCluster),
  table_pos: array(u32, L7_LIMITS.endpointsPerCluster),
  /** Each position's endpoint as kmesh_ep_state keys it: IPv4 bytes as they travel, port in host order. */
  ep_ip4: bytes(4 * L7_LIMITS.endpointsPerCluster),
  ep_port: array(u16, L7_LIMITS.endpointsPerCluster),
  /** Circuit breaker max_requests (routed connections open at once); 0: unlimited. */
  max_requests: u32,
  pad: u32,
});

/** A record on the daemon's report socket (kmesh_l7_report_verdict). */
export const l7Report = new StructCodec('kmesh_l7_report', {
  cluster_id: u32,
  /** network order */
  ip4: bytes(4),
  /** host order */
  port: u16,
  kind: u8,
  pad: u8,
  pad2: u32,
});

/** Ports and addresses in network order: the bytes are written as they travel. */
export const l7Tuple = new StructCodec('kmesh_l7_tuple', {
  local_ip4: bytes(4),
  remote_ip4: bytes(4),
  local_port: bytes(2),
  remote_port: bytes(2),
});

export const l7PoolTaken = new StructCodec('kmesh_l7_pool_taken', { lock: u32, pad: u32, taken: u64 });

export const l7Conn = new StructCodec('kmesh_l7_conn', {
  state: u32,
  route_id: u32,
  cluster_id: u32,
  pool_id: u32,
  upstream: bytes(l7Tuple.size),
  listener: bytes(20),
  responded: u32,
});

export const l7RouteStatKey = new StructCodec('kmesh_l7_route_stat_key', { route_id: u32, cluster_id: u32 });

export const L7_FLAT_LAYOUTS = [
  l7Split,
  l7DomainKey,
  l7HeaderKey,
  l7Vhost,
  l7RouteKey,
  l7Matcher,
  l7Cluster,
  l7Tuple,
  l7PoolTaken,
  l7RouteStatKey,
  l7Report,
];
/** Layouts with nested structs: compared by size and member offsets only. */
export const L7_NESTED_LAYOUTS = [l7Listener, l7Route, l7Conn];

/** An IPv4 address as the 4 bytes of the L7 structs' ip4 fields. */
export function ipBytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

function portBytes(port: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(port);
  return b;
}

/** The key of a TCP connection as seen from one end. */
export function tupleKey(localAddress: string, localPort: number, remoteAddress: string, remotePort: number): Buffer {
  return l7Tuple.encode({
    local_ip4: ipBytes(localAddress),
    remote_ip4: ipBytes(remoteAddress),
    local_port: portBytes(localPort),
    remote_port: portBytes(remotePort),
  });
}

export function anchorFields(address: string, port: number): { anchor_ip4: Buffer; anchor_port: Buffer } {
  return { anchor_ip4: ipBytes(address), anchor_port: portBytes(port) };
}
