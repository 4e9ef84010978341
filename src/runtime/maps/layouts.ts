/**
 * The TypeScript side of bpf/kmesh_maps.h and bpf/kmesh_probe.h: the codecs and constants
 * are generated from the objects' BTF (scripts/gen-layouts.mjs, run by `npm run build`);
 * this module adds only what the C does not define as a struct or an enum.
 */
import { kmesh_lb_policy } from '../../abi/kernel.js';
import { LB_POLICIES, type LbPolicy } from '../../model/types.js';
import { StructCodec, u32 } from './struct-codec.js';

export {
  CLUSTER_RESILIENT,
  CLUSTER_UNIFORM_WEIGHTS,
  CONFIG_SLOTS,
  HASH_CGROUP,
  HASH_SOURCE,
  L4_SOCKOPS,
  LB_TABLE_CHUNK,
  MAGLEV_TABLE_SIZE,
  MAX_CLUSTERS,
  MAX_EJECTED,
  MAX_ENDPOINTS,
  MAX_LB_TABLE_CHUNKS,
  MAX_LISTENERS,
  MAX_PRIORITIES,
  MAX_ROUTE_CLUSTERS,
  RING_HASH_BUCKETS,
} from '../../abi/kernel.js';
export * from './codecs.js';

/** The model's policy names → enum kmesh_lb_policy; a policy the kernel lacks does not compile. */
export const LB_POLICY_CODES = Object.fromEntries(
  LB_POLICIES.map((p) => [p, kmesh_lb_policy[`KMESH_LB_${p.toUpperCase() as Uppercase<LbPolicy>}`]]),
) as Record<LbPolicy, number>;

/** kmesh_rr's key: the cluster id alone (the cursor is shared by both slots; a plain __u32). */
export const clusterIdKey = new StructCodec('cluster id', { id: u32 });

/** kmesh_active_slot: key 0 → the live slot (plain __u32s). */
export const activeSlotKey = new StructCodec('array index', { index: u32 });
export const activeSlotValue = new StructCodec('slot', { slot: u32 });
/** kmesh_l4_mode: key 0 (activeSlotKey's layout) → enum kmesh_l4_mode bits. */
export const l4ModeValue = new StructCodec('l4 mode', { mode: u32 });

// linux/in.h
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
