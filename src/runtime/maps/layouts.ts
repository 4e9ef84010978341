/** The TypeScript side of bpf/kmesh_maps.h; test/unit/layouts-btf.test.ts checks it against BTF. */
import { array, bytes, StructCodec, u8, u16, u32, u64 } from './struct-codec.js';

export const MAX_ROUTE_CLUSTERS = 16;
/** Per config; the listener and cluster maps hold CONFIG_SLOTS configs (kmesh_active_slot picks the live one). */
export const MAX_LISTENERS = 16384;
export const MAX_CLUSTERS = 16384;
export const CONFIG_SLOTS = 2;
export const MAX_ENDPOINTS = 262144;

export const LB_POLICY_CODES = {
  round_robin: 0,
  random: 1,
  least_request: 2,
  maglev: 3,
  ring_hash: 4,
} as const;

export const CLUSTER_UNIFORM_WEIGHTS = 0x1;
export const CLUSTER_RESILIENT = 0x2;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const listenerKey = new StructCodec('kmesh_listener_key', {
  addr: bytes(16),
  port: u16,
  protocol: u8,
  slot: u8,
});

export const listenerValue = new StructCodec('kmesh_listener_value', {
  cluster_count: u32,
  total_weight: u32,
  cluster_ids: array(u32, MAX_ROUTE_CLUSTERS),
  cum_weights: array(u32, MAX_ROUTE_CLUSTERS),
});

/** kmesh_rr's key: the cluster id alone (the cursor is shared by both slots). */
export const clusterIdKey = new StructCodec('cluster id', { id: u32 });

export const clusterKey = new StructCodec('kmesh_cluster_key', { id: u32, slot: u32 });

/** kmesh_active_slot: key 0 → the live slot. */
export const activeSlotKey = new StructCodec('array index', { index: u32 });
export const activeSlotValue = new StructCodec('slot', { slot: u32 });

export const clusterValue = new StructCodec('kmesh_cluster_value', {
  lb_policy: u32,
  generation: u32,
  endpoint_count: u32,
  total_weight: u32,
  flags: u32,
  pad: u32,
});

export const endpointKey = new StructCodec('kmesh_endpoint_key', {
  cluster_id: u32,
  generation: u32,
  index: u32,
});

export const endpointValue = new StructCodec('kmesh_endpoint_value', {
  addr: bytes(16),
  port: u16,
  level: u8,
  pad: u8,
  cum_weight: u32,
});

export const rrValue = new StructCodec('kmesh_rr_value', { lock: u32, next: u32 });

export const sockOrigin = new StructCodec('kmesh_sock_origin', {
  vip: bytes(16),
  endpoint: bytes(16),
  vip_port: u16,
  endpoint_port: u16,
  cluster_id: u32,
});

export const udpReverseKey = new StructCodec('kmesh_udp_reverse_key', {
  cookie: u64,
  endpoint: bytes(16),
  endpoint_port: u16,
  pad: array(u16, 3),
});

export const udpReverseValue = new StructCodec('kmesh_udp_reverse_value', {
  vip: bytes(16),
  vip_port: u16,
  pad: u16,
});

// Resilience (see the resilience part of bpf/kmesh_maps.h).
export const MAX_PRIORITIES = 8;
export const MAX_EJECTED = 16;
export const OVERPROVISIONING_PCT = 140;
export const LB_TABLE_CHUNK = 256;
export const MAX_LB_TABLE_CHUNKS = 65536;
export const MAGLEV_TABLE_SIZE = 65537;
export const RING_HASH_BUCKETS = 65536;
export const HASH_CGROUP = 0x1;
export const HASH_SOURCE = 0x2;

export const clusterPolicy = new StructCodec('kmesh_cluster_policy', {
  consecutive_failures: u32,
  max_ejection_percent: u32,
  base_ejection_ns: u64,
  max_ejection_ns: u64,
  interval_ns: u64,
  max_connections: u32,
  syn_rto_jiffies: u32,
  hash_key: u32,
  syn_retries: u32,
});

export const genKey = new StructCodec('kmesh_gen_key', { cluster_id: u32, generation: u32 });

export const level = new StructCodec('kmesh_level', { start: u32, count: u32, cum_base: u32, weight: u32 });

/** `level` holds MAX_PRIORITIES struct kmesh_level, flattened (start, count, cum_base, weight each). */
export const levels = new StructCodec('kmesh_levels', {
  level_count: u32,
  pad: u32,
  level: array(u32, MAX_PRIORITIES * 4),
});

export const tableKey = new StructCodec('kmesh_table_key', { cluster_id: u32, generation: u32, chunk: u32 });

export const tableChunk = new StructCodec('kmesh_table_chunk', { index: array(u32, LB_TABLE_CHUNK) });

export const epStateKey = new StructCodec('kmesh_ep_state_key', {
  addr: bytes(16),
  port: u16,
  pad: u16,
  cluster_id: u32,
});

/** `active` is signed in C (__s64): read it with BigInt.asIntN(64, …). */
export const epState = new StructCodec('kmesh_ep_state', {
  lock: u32,
  consecutive_failures: u32,
  active: u64,
  ejected_until_ns: u64,
  ejections_total: u64,
  failures_total: u64,
  connect_timeouts: u64,
  times_ejected: u32,
  level: u32,
});

export const ejection = new StructCodec('kmesh_ejection', { until_ns: u64, level: u32, pad: u32 });

/** `ejected` holds MAX_EJECTED struct kmesh_ejection, flattened as (until_ns, level | pad << 32) pairs. */
export const clusterState = new StructCodec('kmesh_cluster_state', {
  lock: u32,
  pad: u32,
  active: u64,
  overflows: u64,
  ejections_total: u64,
  ejections_refused: u64,
  ejected: array(u64, MAX_EJECTED * 2),
});

/** Every codec that mirrors a C struct, for the BTF check. */
export const SHARED_LAYOUTS = [
  listenerKey,
  listenerValue,
  clusterKey,
  clusterValue,
  endpointKey,
  endpointValue,
  rrValue,
  sockOrigin,
  udpReverseKey,
  udpReverseValue,
  clusterPolicy,
  genKey,
  level,
  levels,
  tableKey,
  tableChunk,
  epStateKey,
  epState,
  ejection,
  clusterState,
];
