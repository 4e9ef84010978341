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
  pad: u16,
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
];
