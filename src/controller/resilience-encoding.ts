/**
 * A cluster's resilience settings as map entries (pure, like desired-state.ts): the endpoint order by
 * priority level, locality weights folded into endpoint weights, the level spans (kmesh_levels), the
 * consistent-hash table (kmesh_lb_table chunks) and the per-cluster policy (kmesh_cluster_policy).
 */
import type { Cluster, Endpoint, HashKey } from '../model/types.js';
import { addressKey } from '../model/validate.js';
import { endpointLevels, localityName } from '../model/validate-resilience.js';
import {
  clusterPolicy,
  HASH_CGROUP,
  HASH_SOURCE,
  LB_TABLE_CHUNK,
  level,
  levels,
  MAGLEV_TABLE_SIZE,
  MAX_PRIORITIES,
  RING_HASH_BUCKETS,
  tableChunk,
} from '../runtime/maps/layouts.js';
import { maglevTable, ringHashTable } from './lb-tables.js';
import { type KernelTimers, synSchedule } from './syn-schedule.js';

export interface ClusterLayout {
  /** Lowest priority first; the configured order within a level (round robin follows it). */
  endpoints: Endpoint[];
  /** Weight each endpoint takes, locality weights folded in. */
  weights: number[];
  /** Level index (0 = the lowest priority present) per endpoint. */
  levelOf: number[];
  /** [start, count) per level. */
  spans: Array<{ start: number; count: number }>;
  /** Envoy's overprovisioning factor, percent; 0: the kernel's default (140). */
  overprovisioningPct: number;
}

/**
 * Locality-weighted: an endpoint's share of its level is its locality's weight split by the endpoint
 * weights inside the locality, scaled to integers (the kernel picks by integer weights).
 */
const LOCALITY_SCALE = 1000;

export function layoutCluster(cluster: Cluster): ClusterLayout {
  // Levels: the priorities present, each split by locality match to the daemon when it fails over by locality.
  const order = endpointLevels(cluster);
  const endpoints = order.map((o) => o.ep);
  const levelOf = order.map((o) => o.level);
  const levelCount = new Set(levelOf).size;
  const spans = Array.from({ length: levelCount }, (_, l) => ({
    start: levelOf.indexOf(l),
    count: levelOf.filter((x) => x === l).length,
  }));
  let weights = endpoints.map((ep) => ep.weight);
  if (cluster.localityWeights) {
    const localityWeight = new Map(cluster.localityWeights.map((lw) => [localityName(lw.locality), lw.weight]));
    const inLocality = new Map<string, number>();
    endpoints.forEach((ep, i) => {
      const key = `${levelOf[i]}|${localityName(ep.locality)}`;
      inLocality.set(key, (inLocality.get(key) ?? 0) + ep.weight);
    });
    weights = endpoints.map((ep, i) => {
      const name = localityName(ep.locality);
      const share = (localityWeight.get(name) ?? 1) / (inLocality.get(`${levelOf[i]}|${name}`) ?? 1);
      return Math.max(1, Math.round(ep.weight * share * LOCALITY_SCALE));
    });
  }
  return { endpoints, weights, levelOf, spans, overprovisioningPct: cluster.overprovisioningFactor ?? 0 };
}

/** kmesh_levels for more than one level; undefined when the whole set is one level. */
export function encodeLevels(layout: ClusterLayout, cum: number[]): Buffer | undefined {
  if (layout.spans.length <= 1) return undefined;
  const spans = layout.spans.slice(0, MAX_PRIORITIES).map(({ start, count }) => {
    const base = start > 0 ? (cum[start - 1] as number) : 0;
    return level.encode({ start, count, cum_base: base, weight: (cum[start + count - 1] as number) - base });
  });
  return levels.encode({
    level_count: layout.spans.length,
    overprovisioning_pct: layout.overprovisioningPct,
    level: Buffer.concat(spans),
  });
}

/** The level-0 consistent-hash table in chunks, or undefined for other policies. */
export function encodeTable(cluster: Cluster, layout: ClusterLayout): Buffer[] | undefined {
  if (!hashes(cluster)) return undefined;
  const first = layout.spans[0] ?? { start: 0, count: 0 };
  const hosts = layout.endpoints.slice(first.start, first.start + first.count).map((ep, i) => ({
    name: `${addressKey(ep.address)}|${ep.port}`,
    weight: layout.weights[first.start + i] as number,
  }));
  const table =
    cluster.lbPolicy === 'maglev' ? maglevTable(hosts, MAGLEV_TABLE_SIZE) : ringHashTable(hosts, RING_HASH_BUCKETS);
  const chunks: Buffer[] = [];
  for (let at = 0; at < table.length; at += LB_TABLE_CHUNK) {
    chunks.push(
      tableChunk.encode({ index: Array.from(table.subarray(at, at + LB_TABLE_CHUNK), (i) => first.start + i) }),
    );
  }
  return chunks;
}

const HASH_BITS: Record<HashKey, number> = {
  cgroup: HASH_CGROUP,
  source_address: HASH_SOURCE,
  cgroup_and_source_address: HASH_CGROUP | HASH_SOURCE,
};

const hashes = (cluster: Cluster) => cluster.lbPolicy === 'maglev' || cluster.lbPolicy === 'ring_hash';

/** Whether the endpoint set is reordered (priorities), reweighed (localities) or hashed into a table. */
export function needsLayout(cluster: Cluster): boolean {
  return (
    hashes(cluster) ||
    cluster.localityWeights !== undefined ||
    cluster.localityFailover !== undefined ||
    cluster.endpoints.some((ep) => ep.priority)
  );
}

/** True when connect() must consult kmesh_cluster_policy for this cluster (`layout` of needsLayout clusters). */
export function needsPolicy(cluster: Cluster, layout: ClusterLayout | undefined): boolean {
  return (
    cluster.outlierDetection !== undefined ||
    cluster.maxConnections !== undefined ||
    // L7 circuit breakers count their overflows in the cluster's state
    cluster.maxPendingRequests !== undefined ||
    cluster.maxRequests !== undefined ||
    cluster.connectTimeoutMs !== undefined ||
    cluster.lbPolicy === 'least_request' ||
    hashes(cluster) ||
    (layout?.spans.length ?? 1) > 1
  );
}

const NS_PER_MS = 1_000_000n;

export function encodePolicy(cluster: Cluster, timers: KernelTimers): Buffer {
  const od = cluster.outlierDetection;
  const syn = cluster.connectTimeoutMs !== undefined ? synSchedule(cluster.connectTimeoutMs, timers) : undefined;
  return clusterPolicy.encode({
    consecutive_failures: od?.consecutiveFailures ?? 0,
    max_ejection_percent: od?.maxEjectionPercent ?? 0,
    base_ejection_ns: BigInt(od?.baseEjectionTimeMs ?? 0) * NS_PER_MS,
    max_ejection_ns: BigInt(od?.maxEjectionTimeMs ?? 0) * NS_PER_MS,
    interval_ns: BigInt(od?.intervalMs ?? 0) * NS_PER_MS,
    max_connections: cluster.maxConnections ?? 0,
    syn_rto_jiffies: syn?.rtoJiffies ?? 0,
    syn_retries: syn?.retries ?? 0,
    hash_key: HASH_BITS[cluster.hashKey ?? 'cgroup'],
  });
}
