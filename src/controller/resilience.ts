/**
 * The user-space side of kernel resilience: keeps kmesh_cluster_policy equal to the desired clusters,
 * creates each cluster's counters (kmesh_cluster_state, zeroed: the kernel cannot make a value with a
 * spin lock that large on its stack), drops the state of endpoints that left, and reads the kernel's
 * view back for kmeshctl, D-Bus and metrics. Decisions (ejection, return, overflow) are all made in the
 * kernel; nothing here is in a connection's path.
 */
import type { Logger } from 'pino';
import type { MeshModel } from '../model/types.js';
import { localityName } from '../model/validate-resilience.js';
import { BPF_NOEXIST } from '../runtime/bpf-map.js';
import { BpfError } from '../runtime/errors.js';
import { encodeAddr } from '../runtime/maps/addr.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import { clusterKey, clusterState, epState, epStateKey, MAX_EJECTED } from '../runtime/maps/layouts.js';
import type { EndpointStatus } from './control.js';
import type { DesiredState } from './desired-state.js';
import { layoutCluster } from './resilience-encoding.js';

const EEXIST = 17;

export interface ClusterCounters {
  cluster: string;
  activeConnections: number;
  overflowsTotal: number;
  ejectionsTotal: number;
  ejectionsRefusedTotal: number;
  ejectionsActive: number;
}

/** CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns(). */
const monotonicNs = (): bigint => process.hrtime.bigint();

export class Resilience {
  private policies = new Map<number, Buffer>();
  private model: MeshModel = { listeners: [], clusters: [] };
  private ids = new Map<string, number>();
  private lastEjections = new Map<string, bigint>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maps: DatapathMaps,
    private readonly logger: Logger,
  ) {}

  adopt(): void {
    for (const [key, value] of this.maps.clusterPolicy.entries()) this.policies.set(clusterKey.decode(key).id, value);
  }

  /** After the reconciler applied `desired` (the model it came from): policies, counters, stale state. */
  sync(desired: DesiredState, model: MeshModel): void {
    for (const cluster of desired.clusters.values()) {
      if (!cluster.policy) continue;
      const key = clusterKey.encode({ id: cluster.id });
      const live = this.policies.get(cluster.id);
      if (!live?.equals(cluster.policy)) {
        this.maps.clusterPolicy.update(key, cluster.policy);
        this.policies.set(cluster.id, cluster.policy);
      }
      try {
        this.maps.clusterState.update(key, clusterState.encode({}), BPF_NOEXIST);
      } catch (err) {
        if (!(err instanceof BpfError && err.errno === EEXIST)) throw err;
      }
    }
    for (const id of [...this.policies.keys()]) {
      if (desired.clusters.get(id)?.policy) continue;
      const key = clusterKey.encode({ id });
      this.maps.clusterPolicy.delete(key);
      this.policies.delete(id);
      if (!desired.clusters.has(id)) this.maps.clusterState.delete(key);
    }
    this.model = model;
    this.ids = desired.clusterIds;
    this.sweepEndpointStates();
  }

  /** Endpoint state of endpoints no longer in their cluster (the kernel made it on first use). */
  private sweepEndpointStates(): void {
    const live = new Set<string>();
    for (const cluster of this.model.clusters) {
      const id = this.ids.get(cluster.name) ?? 0;
      for (const ep of cluster.endpoints) live.add(this.stateKey(id, ep.address, ep.port).toString('hex'));
    }
    for (const key of [...this.maps.endpointState.keys()]) {
      if (!live.has(key.toString('hex'))) this.maps.endpointState.delete(key);
    }
  }

  private stateKey(clusterId: number, address: string, port: number): Buffer {
    return epStateKey.encode({ addr: encodeAddr(address), port, cluster_id: clusterId });
  }

  /** Each endpoint of a cluster as the kernel sees it; undefined for an unknown cluster. */
  endpoints(clusterName: string): EndpointStatus[] | undefined {
    const cluster = this.model.clusters.find((c) => c.name === clusterName);
    const id = this.ids.get(clusterName);
    if (!cluster || id === undefined) return undefined;
    const layout = layoutCluster(cluster);
    const now = monotonicNs();
    const wall = Date.now();
    return layout.endpoints.map((ep, i) => {
      const raw = this.maps.endpointState.lookup(this.stateKey(id, ep.address, ep.port));
      const st = raw ? epState.decode(raw) : undefined;
      const until = st?.ejected_until_ns ?? 0n;
      const ejected = until > now;
      const active = st ? BigInt.asIntN(64, st.active) : 0n;
      return {
        address: ep.address,
        port: ep.port,
        priority: ep.priority ?? 0,
        locality: localityName(ep.locality),
        weight: layout.weights[i] as number,
        healthy: !ejected,
        ...(ejected ? { ejectedUntil: new Date(wall + Number((until - now) / 1_000_000n)).toISOString() } : {}),
        activeConnections: Number(active > 0n ? active : 0n),
        consecutiveFailures: st?.consecutive_failures ?? 0,
        timesEjected: st?.times_ejected ?? 0,
        ejectionsTotal: Number(st?.ejections_total ?? 0n),
        failuresTotal: Number(st?.failures_total ?? 0n),
        connectTimeoutsTotal: Number(st?.connect_timeouts ?? 0n),
      };
    });
  }

  /** Per-cluster counters of the clusters that have them. */
  clusters(): ClusterCounters[] {
    const out: ClusterCounters[] = [];
    const now = monotonicNs();
    for (const [name, id] of this.ids) {
      const raw = this.maps.clusterState.lookup(clusterKey.encode({ id }));
      if (!raw) continue;
      const cs = clusterState.decode(raw);
      const active = BigInt.asIntN(64, cs.active);
      let ejectionsActive = 0;
      for (let i = 0; i < MAX_EJECTED; i++) if ((cs.ejected[i * 2] ?? 0) > now) ejectionsActive++;
      out.push({
        cluster: name,
        activeConnections: Number(active > 0n ? active : 0n),
        overflowsTotal: Number(cs.overflows),
        ejectionsTotal: Number(cs.ejections_total),
        ejectionsRefusedTotal: Number(cs.ejections_refused),
        ejectionsActive,
      });
    }
    return out;
  }

  /** Logs each ejection the kernel made (polled: the kernel does not wait for this). */
  watchEjections(intervalMs: number): void {
    this.timer = setInterval(() => this.logNewEjections(), intervalMs);
    this.timer.unref();
  }

  private logNewEjections(): void {
    for (const counters of this.clusters()) {
      const before = this.lastEjections.get(counters.cluster) ?? 0n;
      const total = BigInt(counters.ejectionsTotal);
      this.lastEjections.set(counters.cluster, total);
      if (total === before) continue;
      for (const ep of this.endpoints(counters.cluster) ?? []) {
        if (!ep.healthy) {
          this.logger.warn(
            {
              cluster: counters.cluster,
              endpoint: `${ep.address}:${ep.port}`,
              until: ep.ejectedUntil,
              timesEjected: ep.timesEjected,
            },
            'endpoint ejected (outlier detection)',
          );
        }
      }
    }
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
