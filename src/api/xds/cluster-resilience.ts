/**
 * Cluster fields that decide resilience at connect time, as istiod encodes a DestinationRule:
 * outlier_detection, circuit_breakers, connect_timeout, lb_policy configs, common_lb_config. What the kernel
 * does not enforce goes to `unenforced`, named; nonsense raises XdsResourceError (NACK naming the cluster).
 */
import type { Cluster, OutlierDetection } from '../../model/types.js';
import { OUTLIER_DEFAULTS, RESILIENCE_LIMITS } from '../../model/validate-resilience.js';
import { MAGLEV_TABLE_SIZE } from '../../runtime/maps/layouts.js';
import { XdsResourceError } from './resources.js';

// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf messages are dynamic
type M = any;

/** The parts of the model Cluster a CDS resource carries beyond name, policy and endpoints. */
export type ClusterResilience = Pick<
  Cluster,
  'outlierDetection' | 'maxConnections' | 'maxPendingRequests' | 'maxRequests' | 'connectTimeoutMs' | 'unenforced'
> & { localityWeighted?: boolean };

const num = (v: unknown): number =>
  typeof v === 'object' && v !== null && 'toNumber' in v ? (v as { toNumber(): number }).toNumber() : Number(v ?? 0);

/** google.protobuf.Duration → whole milliseconds; undefined when absent. */
export function durationMs(d: M): number | undefined {
  if (!d) return undefined;
  return num(d.seconds) * 1000 + Math.round(num(d.nanos) / 1e6);
}

const wrapped = (w: M): number | undefined => (w ? num(w.value) : undefined);

/** A ClusterLoadAssignment's policy.overprovisioning_factor (percent); undefined when absent (Envoy's 140). */
export function overprovisioningFactor(cla: M, what: string): number | undefined {
  const v = wrapped(cla?.policy?.overprovisioningFactor);
  if (v === undefined) return undefined;
  const [min, max] = RESILIENCE_LIMITS.overprovisioningFactor;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new XdsResourceError(`${what}: policy.overprovisioning_factor ${v} (must be ${min}..${max})`);
  }
  return v;
}

function outlierDetection(od: M, what: string, unenforced: string[]): OutlierDetection | undefined {
  const split = od.splitExternalLocalOriginErrors === true;
  // Envoy: with the split, local-origin failures count on their own; without it, connect failures count
  // toward consecutive_5xx (enforced 100 % unless told otherwise) and consecutive_gateway_failure (0 %).
  const thresholds: number[] = [];
  if (split) thresholds.push(wrapped(od.consecutiveLocalOriginFailure) ?? OUTLIER_DEFAULTS.consecutiveFailures);
  else {
    if ((wrapped(od.enforcingConsecutive_5xx) ?? 100) > 0)
      thresholds.push(wrapped(od.consecutive_5xx) ?? OUTLIER_DEFAULTS.consecutiveFailures);
    if ((wrapped(od.enforcingConsecutiveGatewayFailure) ?? 0) > 0)
      thresholds.push(wrapped(od.consecutiveGatewayFailure) ?? OUTLIER_DEFAULTS.consecutiveFailures);
  }
  if (od.enforcingSuccessRate || od.successRateMinimumHosts || od.successRateRequestVolume || od.successRateStdevFactor)
    unenforced.push('outlier_detection success-rate ejection (needs request outcomes)');
  const enforced = thresholds.filter((t) => t > 0);
  if (enforced.length === 0) {
    unenforced.push('outlier_detection: no consecutive-failure rule is enforced');
    return undefined;
  }
  const baseEjectionTimeMs = durationMs(od.baseEjectionTime) ?? OUTLIER_DEFAULTS.baseEjectionTimeMs;
  const out: OutlierDetection = {
    consecutiveFailures: Math.min(...enforced),
    baseEjectionTimeMs,
    maxEjectionTimeMs:
      durationMs(od.maxEjectionTime) ?? Math.max(OUTLIER_DEFAULTS.maxEjectionTimeMs, baseEjectionTimeMs),
    maxEjectionPercent: wrapped(od.maxEjectionPercent) ?? OUTLIER_DEFAULTS.maxEjectionPercent,
    intervalMs: durationMs(od.interval) ?? OUTLIER_DEFAULTS.intervalMs,
  };
  const [, maxPercent] = RESILIENCE_LIMITS.maxEjectionPercent;
  if (out.maxEjectionPercent < 1 || out.maxEjectionPercent > maxPercent) {
    throw new XdsResourceError(
      `${what}: outlier_detection.max_ejection_percent ${out.maxEjectionPercent} is not 1..${maxPercent}`,
    );
  }
  return out;
}

export function decodeClusterResilience(c: M, what: string): ClusterResilience {
  const unenforced: string[] = [];
  const out: ClusterResilience = {};
  if (c.outlierDetection) {
    const od = outlierDetection(c.outlierDetection, what, unenforced);
    if (od) out.outlierDetection = od;
  }
  for (const t of c.circuitBreakers?.thresholds ?? []) {
    // RoutingPriority HIGH (1) is for requests marked high priority: an L7 notion
    if ((t.priority ?? 0) !== 0) {
      unenforced.push('circuit_breakers thresholds for priority HIGH');
      continue;
    }
    const max = wrapped(t.maxConnections);
    if (max !== undefined) {
      if (max === 0)
        throw new XdsResourceError(`${what}: circuit_breakers max_connections 0 would refuse every connect`);
      out.maxConnections = max;
    }
    // enforced by the L7 path for clusters HTTP routes use (docs/l7.md); istiod's default, the uint32 maximum,
    // is no limit (the kernel then counts nothing)
    for (const [field, name] of [
      ['maxPendingRequests', 'max_pending_requests'],
      ['maxRequests', 'max_requests'],
    ] as const) {
      const v = wrapped(t[field]);
      if (v === undefined || v === 0xffffffff) continue;
      if (v === 0) throw new XdsResourceError(`${what}: circuit_breakers ${name} 0 would refuse every request`);
      out[field] = v;
    }
    if (t.maxRetries) unenforced.push('circuit_breakers max_retries (per request: needs L7)');
  }
  if (c.circuitBreakers?.perHostThresholds?.length) unenforced.push('circuit_breakers per_host_thresholds');
  const timeout = durationMs(c.connectTimeout);
  if (timeout !== undefined && timeout > 0) {
    const [min, max] = RESILIENCE_LIMITS.connectTimeoutMs;
    if (timeout > max) throw new XdsResourceError(`${what}: connect_timeout ${timeout} ms is more than ${max} ms`);
    out.connectTimeoutMs = Math.max(timeout, min);
  }
  const table = wrapped(c.maglevLbConfig?.tableSize);
  if (table !== undefined && table !== MAGLEV_TABLE_SIZE)
    unenforced.push(`maglev_lb_config.table_size ${table} (the kernel table has ${MAGLEV_TABLE_SIZE} entries)`);
  if (c.ringHashLbConfig?.minimumRingSize || c.ringHashLbConfig?.maximumRingSize)
    unenforced.push('ring_hash_lb_config ring sizes (the ring is sampled at 65,536 points)');
  const choices = wrapped(c.leastRequestLbConfig?.choiceCount);
  if (choices !== undefined && choices !== 2)
    unenforced.push(`least_request_lb_config.choice_count ${choices} (2 used)`);
  const common = c.commonLbConfig;
  if (common?.localityWeightedLbConfig) out.localityWeighted = true;
  if (common?.zoneAwareLbConfig) unenforced.push('common_lb_config.zone_aware_lb_config');
  if (common?.healthyPanicThreshold)
    unenforced.push('common_lb_config.healthy_panic_threshold (panic only when all are ejected)');
  if (unenforced.length > 0) out.unenforced = unenforced;
  return out;
}
