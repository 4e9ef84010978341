/**
 * Checks of a cluster's resilience settings (outlier detection, circuit breaking, connect timeout,
 * consistent-hash key, priorities and localities). The ranges are written here once; the TOML reader
 * and the xDS decoder rely on these messages.
 */
import {
  type Cluster,
  type Endpoint,
  type FailoverPriorityLabel,
  HASH_KEYS,
  type Locality,
  type LocalityFailover,
} from './types.js';

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

/** Istio's topology labels (and their short names here) for the locality parts failover_priority can name. */
const PRIORITY_LABEL_PARTS: Record<string, keyof Locality> = {
  'topology.kubernetes.io/region': 'region',
  'topology.kubernetes.io/zone': 'zone',
  'topology.istio.io/subzone': 'subZone',
  region: 'region',
  zone: 'zone',
  subzone: 'subZone',
};

/** `label` or `label=value` → the locality part it ranks by; undefined for a label endpoints do not carry. */
export function parseFailoverPriorityLabel(text: string): FailoverPriorityLabel | undefined {
  const eq = text.indexOf('=');
  const name = eq < 0 ? text : text.slice(0, eq);
  const part = Object.hasOwn(PRIORITY_LABEL_PARTS, name) ? PRIORITY_LABEL_PARTS[name] : undefined;
  if (!part) return undefined;
  return eq < 0 ? { label: text, part } : { label: text, part, value: text.slice(eq + 1) };
}

export const FAILOVER_PRIORITY_LABELS = Object.keys(PRIORITY_LABEL_PARTS);

/** The values regionRank returns: localityRank's, and 4 for a region that a `regions` entry puts last. */
const REGION_RANKS = 5;

/** localityRank, with Istio's `failover` list: the first entry from the daemon's region keeps only its `to` at 3. */
function regionRank(lf: LocalityFailover, ep: Locality | undefined): number {
  const rank = localityRank(lf.own, ep);
  if (rank < 3) return rank;
  const rule = lf.regions?.find((r) => r.from === lf.own.region);
  return rule && ep?.region !== rule.to ? 4 : 3;
}

/** failoverPriority: 0 when every label matches, else the number of labels from the first that does not. */
function labelRank(lf: LocalityFailover, labels: FailoverPriorityLabel[], ep: Locality | undefined): number {
  const miss = labels.findIndex(({ part, value }) => (value ?? lf.own[part] ?? '') !== (ep?.[part] ?? ''));
  return miss < 0 ? 0 : labels.length - miss;
}

/** An endpoint's rank by locality: failoverPriority's, with the region ranks inside it only when `regions` is set. */
export function failoverRank(lf: LocalityFailover, ep: Locality | undefined): number {
  if (!lf.priority) return regionRank(lf, ep);
  const rank = labelRank(lf, lf.priority, ep);
  return lf.regions ? rank * REGION_RANKS + regionRank(lf, ep) : rank;
}

/** Every value failoverRank can return is below this (each locality part labelled at most once). */
const RANK_SPAN = (new Set(Object.values(PRIORITY_LABEL_PARTS)).size + 1) * REGION_RANKS;

/** An endpoint's place in the failover order: its priority, then (with locality failover) its rank. */
export function failoverOrder(cluster: Cluster, ep: Endpoint): number {
  const rank = cluster.localityFailover ? failoverRank(cluster.localityFailover, ep.locality) : 0;
  return (ep.priority ?? 0) * RANK_SPAN + rank;
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

const isRegionName = (text: string) => {
  const locality = parseLocality(text);
  return locality !== undefined && locality.zone === undefined;
};

function localityFailoverProblems(lf: LocalityFailover, at: (key: string) => string): string[] {
  const errors: string[] = [];
  const froms = new Set<string>();
  lf.regions?.forEach(({ from, to }, j) => {
    const where = at(`locality_failover_regions[${j}]`);
    for (const [key, name] of [
      ['from', from],
      ['to', to],
    ] as const) {
      if (!isRegionName(name)) errors.push(`${where}.${key}: must be a region name (no "/" or spaces), got "${name}"`);
    }
    if (from === to) errors.push(`${where}: fails over from "${from}" to itself`);
    if (froms.has(from)) errors.push(`${where}.from: "${from}" is listed twice (only the first would apply)`);
    froms.add(from);
  });
  const parts = new Set<string>();
  lf.priority?.forEach(({ label, part }, j) => {
    if (parts.has(part)) errors.push(`${at(`locality_failover_priority[${j}]`)}: "${label}" ranks by ${part} again`);
    parts.add(part);
  });
  return errors;
}

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
  if (cluster.localityFailover) {
    errors.push(...localityFailoverProblems(cluster.localityFailover, at));
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
