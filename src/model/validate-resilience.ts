/**
 * Checks of a cluster's resilience settings (outlier detection, circuit breaking, connect timeout,
 * consistent-hash key, priorities and localities). The ranges are written here once; the TOML reader
 * and the xDS decoder rely on these messages.
 */
import { type Cluster, type Endpoint, HASH_KEYS, type Locality } from './types.js';

/** Each bound is what the kernel side can hold or what makes sense for a connect-time decision. */
export const RESILIENCE_LIMITS = {
  consecutiveFailures: [1, 1000],
  /** A day: longer ejections are outages, not outlier handling. */
  ejectionTimeMs: [1, 86_400_000],
  intervalMs: [1, 86_400_000],
  maxEjectionPercent: [1, 100],
  maxConnections: [1, 0xffffffff],
  maxPendingRequests: [1, 0xffffffff],
  maxRequests: [1, 0xffffffff],
  /** The SYN retransmission timeout is set in jiffies (≥ 4 ms) and capped by the kernel at 120 s. */
  connectTimeoutMs: [10, 300_000],
  /** Levels kept in the kernel (KMESH_MAX_PRIORITIES): priorities 0..7. */
  priority: [0, 7],
  /** Percent; the kernel multiplies it by a level's endpoint count, which must stay within 32 bits. */
  overprovisioningFactor: [1, 10_000],
} as const;

/** Failover levels the kernel keeps (KMESH_MAX_PRIORITIES). */
const MAX_LEVELS = RESILIENCE_LIMITS.priority[1] + 1;

/** Envoy's defaults for what the operator leaves out. */
export const OUTLIER_DEFAULTS = {
  consecutiveFailures: 5,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
  intervalMs: 10_000,
} as const;

export const localityName = (l: Locality | undefined): string =>
  [l?.region ?? '', l?.zone ?? '', l?.subZone ?? ''].join('/').replace(/\/+$/, '');

/** "region/zone/subzone" (zone and subzone optional) → Locality; undefined if malformed. */
export function parseLocality(text: string): Locality | undefined {
  const parts = text.split('/');
  if (parts.length > 3 || parts.some((p) => p === '' || /\s/.test(p))) return undefined;
  const [region, zone, subZone] = parts as [string, string?, string?];
  return { region, ...(zone ? { zone } : {}), ...(subZone ? { subZone } : {}) };
}

/**
 * How far an endpoint's locality is from the daemon's, as istiod ranks it for locality failover: 0 same
 * region, zone and subzone; 1 same region and zone; 2 same region; 3 elsewhere (absent parts compare equal).
 */
export function localityRank(own: Locality, ep: Locality | undefined): number {
  if ((own.region ?? '') !== (ep?.region ?? '')) return 3;
  if ((own.zone ?? '') !== (ep?.zone ?? '')) return 2;
  return (own.subZone ?? '') === (ep?.subZone ?? '') ? 0 : 1;
}

/** The values localityRank returns. */
const LOCALITY_RANKS = 4;

/** An endpoint's place in the failover order: its priority, then (with locality failover) its rank. */
export function failoverOrder(cluster: Cluster, ep: Endpoint): number {
  const rank = cluster.failoverLocality ? localityRank(cluster.failoverLocality, ep.locality) : 0;
  return (ep.priority ?? 0) * LOCALITY_RANKS + rank;
}

/**
 * The kernel's endpoint order of a cluster (kmesh_endpoints indexes, what kmesh_lb_table names): by failover
 * level (0 = the lowest order present), the configured order within a level.
 */
export function endpointLevels(cluster: Cluster): Array<{ ep: Endpoint; level: number }> {
  const orderOf = cluster.endpoints.map((ep) => failoverOrder(cluster, ep));
  const levelOf = new Map([...new Set(orderOf)].sort((a, b) => a - b).map((p, i) => [p, i]));
  return cluster.endpoints
    .map((ep, i) => ({ ep, i, level: levelOf.get(orderOf[i] as number) as number }))
    .sort((a, b) => a.level - b.level || a.i - b.i)
    .map(({ ep, level }) => ({ ep, level }));
}

const inRange = (v: number, [min, max]: readonly [number, number]) => Number.isInteger(v) && v >= min && v <= max;
const range = ([min, max]: readonly [number, number]) => `an integer ${min}..${max}`;

/** Problems of one cluster's resilience settings; `at(key)` names the place. */
export function resilienceProblems(cluster: Cluster, at: (key: string) => string): string[] {
  const errors: string[] = [];
  const L = RESILIENCE_LIMITS;
  const od = cluster.outlierDetection;
  if (od) {
    const check = (key: string, v: number, r: readonly [number, number]) => {
      if (!inRange(v, r)) errors.push(`${at(`outlier_detection.${key}`)}: must be ${range(r)}, got ${v}`);
    };
    check('consecutive_failures', od.consecutiveFailures, L.consecutiveFailures);
    check('base_ejection_time_ms', od.baseEjectionTimeMs, L.ejectionTimeMs);
    check('max_ejection_time_ms', od.maxEjectionTimeMs, L.ejectionTimeMs);
    check('max_ejection_percent', od.maxEjectionPercent, L.maxEjectionPercent);
    check('interval_ms', od.intervalMs, L.intervalMs);
    if (od.maxEjectionTimeMs < od.baseEjectionTimeMs) {
      errors.push(
        `${at('outlier_detection.max_ejection_time_ms')}: ${od.maxEjectionTimeMs} is below base_ejection_time_ms ${od.baseEjectionTimeMs}`,
      );
    }
  }
  for (const [field, key] of [
    ['maxConnections', 'max_connections'],
    ['maxPendingRequests', 'max_pending_requests'],
    ['maxRequests', 'max_requests'],
  ] as const) {
    const v = cluster[field];
    if (v !== undefined && !inRange(v, L[field])) errors.push(`${at(key)}: must be ${range(L[field])}, got ${v}`);
  }
  if (cluster.connectTimeoutMs !== undefined && !inRange(cluster.connectTimeoutMs, L.connectTimeoutMs)) {
    errors.push(`${at('connect_timeout_ms')}: must be ${range(L.connectTimeoutMs)}, got ${cluster.connectTimeoutMs}`);
  }
  if (cluster.hashKey !== undefined) {
    if (!HASH_KEYS.includes(cluster.hashKey)) {
      errors.push(`${at('hash_key')}: must be one of ${HASH_KEYS.join(', ')}, got "${cluster.hashKey}"`);
    } else if (cluster.lbPolicy !== 'maglev' && cluster.lbPolicy !== 'ring_hash') {
      errors.push(`${at('hash_key')}: applies to lb_policy maglev or ring_hash, not ${cluster.lbPolicy}`);
    }
  }
  cluster.endpoints.forEach((ep, j) => {
    if (ep.priority !== undefined && !inRange(ep.priority, L.priority)) {
      errors.push(`${at(`endpoints[${j}].priority`)}: must be ${range(L.priority)}, got ${ep.priority}`);
    }
  });
  if (cluster.failoverLocality) {
    const levels = new Set(cluster.endpoints.map((ep) => failoverOrder(cluster, ep))).size;
    if (levels > MAX_LEVELS) {
      errors.push(
        `${at('locality_failover')}: priorities × locality matches make ${levels} failover levels, the kernel keeps ${MAX_LEVELS}`,
      );
    }
  }
  const factor = cluster.overprovisioningFactor;
  if (factor !== undefined && !inRange(factor, L.overprovisioningFactor)) {
    errors.push(`${at('overprovisioning_factor')}: must be ${range(L.overprovisioningFactor)}, got ${factor}`);
  }
  if (cluster.localityWeights) {
    const weighted = new Set<string>();
    cluster.localityWeights.forEach((lw, j) => {
      const name = localityName(lw.locality);
      if (weighted.has(name)) errors.push(`${at(`locality_weights[${j}]`)}: locality "${name}" is listed twice`);
      weighted.add(name);
      if (!Number.isInteger(lw.weight) || lw.weight < 1) {
        errors.push(`${at(`locality_weights[${j}].weight`)}: must be a positive integer, got ${lw.weight}`);
      }
    });
    const used = new Set(cluster.endpoints.map((ep) => localityName(ep.locality)));
    for (const name of weighted) {
      if (!used.has(name)) errors.push(`${at('locality_weights')}: locality "${name}" has no endpoint`);
    }
    cluster.endpoints.forEach((ep, j) => {
      const name = localityName(ep.locality);
      if (!weighted.has(name)) {
        errors.push(`${at(`endpoints[${j}].locality`)}: "${name}" has no weight in locality_weights`);
      }
    });
  }
  return errors;
}
