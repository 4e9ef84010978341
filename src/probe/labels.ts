/**
 * Connection label sets and their cardinality bound. Every distinct label set is a
 * time series kept forever by prom-client and by Prometheus, and destination_address
 * alone can take as many values as there are endpoints (or, for unsteered traffic,
 * remote addresses). So at most `maxSeries` distinct sets are admitted; later new
 * sets are counted under one overflow set whose non-reporter labels are "other".
 */
import { type ConnTarget, hostPort } from './event-codec.js';

export const CONNECTION_LABELS = [
  'reporter',
  'source_workload',
  'destination_service',
  'destination_address',
  'destination_cluster',
] as const;
export type ConnectionLabels = Record<(typeof CONNECTION_LABELS)[number], string>;

export const OTHER = 'other';
export const UNKNOWN = 'unknown';

/** What the daemon knows about names; all lookups must be cheap (in-memory). */
export interface ProbeLookups {
  /** Registered unit name (or cgroup path) of a cgroup id. */
  workloadOfCgroup(id: bigint): string | undefined;
  /** Listener name of a service address. */
  listenerOf(vip: string, port: number): string | undefined;
  /** Cluster name of a cluster id as written to the maps. */
  clusterNameOf(id: number): string | undefined;
}

/** The Istio-style labels of a connection (before the cardinality bound). */
export function labelsOf(ev: ConnTarget, lookups: ProbeLookups): ConnectionLabels {
  const source = ev.cgroupId === 0n ? UNKNOWN : (lookups.workloadOfCgroup(ev.cgroupId) ?? `cgroup:${ev.cgroupId}`);
  if (!ev.steered) {
    return {
      reporter: 'source',
      source_workload: source,
      destination_service: UNKNOWN,
      destination_address: hostPort(ev.remote, ev.remotePort),
      destination_cluster: UNKNOWN,
    };
  }
  const s = ev.steered;
  return {
    reporter: 'source',
    source_workload: source,
    destination_service: lookups.listenerOf(s.vip, s.vipPort) ?? hostPort(s.vip, s.vipPort),
    destination_address: hostPort(s.endpoint, s.endpointPort),
    destination_cluster: lookups.clusterNameOf(s.clusterId) ?? `cluster:${s.clusterId}`,
  };
}

export class LabelLimiter {
  private readonly admitted = new Set<string>();
  /** Events whose label set was folded into the overflow set. */
  overflowed = 0;

  constructor(readonly maxSeries: number) {}

  admit(labels: ConnectionLabels): ConnectionLabels {
    const key = CONNECTION_LABELS.map((n) => labels[n]).join('\u0000');
    if (this.admitted.has(key)) return labels;
    if (this.admitted.size < this.maxSeries) {
      this.admitted.add(key);
      return labels;
    }
    this.overflowed++;
    return {
      reporter: labels.reporter,
      source_workload: OTHER,
      destination_service: OTHER,
      destination_address: OTHER,
      destination_cluster: OTHER,
    };
  }

  get size(): number {
    return this.admitted.size;
  }
}
