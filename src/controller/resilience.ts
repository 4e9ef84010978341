/**
 * The user-space side of kernel resilience: keeps kmesh_cluster_policy equal to the desired clusters,
 * creates each cluster's counters (kmesh_cluster_state, zeroed: the kernel cannot make a value with a
 * spin lock that large on its stack), drops the state of endpoints that left, and reads the kernel's
 * view back for kmeshctl, D-Bus and metrics. Decisions (ejection, return, overflow) are all made in the
 * kernel; nothing here is in a connection's path.
 */
import type { Logger } from 'pino';
import type { EndpointStatus } from '../contracts/control.js';
import { encodeAddr } from '../model/address.js';
import type { Cluster } from '../model/types.js';
import { localityName } from '../model/validate-resilience.js';
import { BPF_NOEXIST } from '../runtime/bpf-map.js';
import { EEXIST } from '../runtime/errno.js';
import { BpfError } from '../runtime/errors.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import { clusterIdKey, clusterState, ejection, epState, epStateKey, MAX_EJECTED } from '../runtime/maps/layouts.js';
import type { ConfigDelta } from './reconciler.js';
import { layoutCluster } from './resilience-encoding.js';

const EJECTIONS_TOTAL = clusterState.offsetOf('ejections_total');

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

/** How the reader finds the live clusters (MeshState). */
export interface ClusterLookup {
  cluster(name: string): { cluster: Cluster; id: number } | undefined;
  clusterName(id: number): string | undefined;
}

/** Endpoint state of endpoints that left is dropped this often (a walk of the map, kept off the apply path). */
const SWEEP_EVERY_TICKS = 30;

export class Resilience {
  private policies = new Map<number, Buffer>();
  /** ejections_total per cluster id at the last tick */
  private lastEjections = new Map<number, bigint>();
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;

  constructor(
    private readonly maps: DatapathMaps,
    private readonly logger: Logger,
    private readonly lookup: ClusterLookup,
  ) {}

  adopt(): void {
    for (const [key, value] of this.maps.clusterPolicy.entries()) this.policies.set(clusterIdKey.decode(key).id, value);
  }

  /** After the reconciler applied `delta`: the policies and counters of the clusters it names. */
  sync(delta: ConfigDelta): void {
    for (const [id, cluster] of delta.clusters) {
      const key = clusterIdKey.encode({ id });
      if (cluster?.policy) {
        if (!this.policies.get(id)?.equals(cluster.policy)) {
          this.maps.clusterPolicy.update(key, cluster.policy);
          this.policies.set(id, cluster.policy);
        }
        try {
          this.maps.clusterState.update(key, clusterState.encode({}), BPF_NOEXIST);
        } catch (err) {
          if (!(err instanceof BpfError && err.errno === EEXIST)) throw err;
        }
        continue;
      }
      if (this.policies.delete(id)) this.maps.clusterPolicy.delete(key);
      this.lastEjections.delete(id);
      if (cluster === null) this.maps.clusterState.delete(key);
    }
  }

  /** Endpoint state of endpoints no longer in their cluster (the kernel made it on first use). */
  private sweepEndpointStates(): void {
    const present = new Map<number, Set<string>>();
    const endpointsOf = (id: number): Set<string> => {
      let set = present.get(id);
      if (!set) {
        const name = this.lookup.clusterName(id);
        const cluster = name === undefined ? undefined : this.lookup.cluster(name)?.cluster;
        set = new Set(cluster?.endpoints.map((ep) => this.stateKey(id, ep.address, ep.port).toString('hex')));
        present.set(id, set);
      }
      return set;
    };
    // batched: a key-by-key walk of 100k endpoint states held the event loop for a quarter second
    const gone: Buffer[] = [];
    this.maps.endpointState.forEachBatched((key) => {
      if (!endpointsOf(epStateKey.decode(key).cluster_id).has(key.toString('hex'))) gone.push(Buffer.from(key));
    });
    for (const key of gone) this.maps.endpointState.delete(key);
  }

  private stateKey(clusterId: number, address: string, port: number): Buffer {
    return epStateKey.encode({ addr: encodeAddr(address), port, cluster_id: clusterId });
  }

  /** Each endpoint of a cluster as the kernel sees it; undefined for an unknown cluster. */
  endpoints(clusterName: string): EndpointStatus[] | undefined {
    const found = this.lookup.cluster(clusterName);
    if (!found) return undefined;
    const { cluster, id } = found;
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
    for (const id of this.policies.keys()) {
      const name = this.lookup.clusterName(id);
      if (name === undefined) continue;
      const raw = this.maps.clusterState.lookup(clusterIdKey.encode({ id }));
      if (!raw) continue;
      const cs = clusterState.decode(raw);
      const active = BigInt.asIntN(64, cs.active);
      let ejectionsActive = 0;
      for (let i = 0; i < MAX_EJECTED; i++) {
        const slot = cs.ejected.subarray(i * ejection.size, (i + 1) * ejection.size);
        if (ejection.decode(slot).until_ns > now) ejectionsActive++;
      }
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

  /** Logs each ejection the kernel made (polled: the kernel does not wait for this); sweeps now and then. */
  watch(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.logNewEjections();
      if (++this.ticks % SWEEP_EVERY_TICKS === 0) this.sweepEndpointStates();
    }, intervalMs);
    this.timer.unref();
  }

  /**
   * One batched read of every cluster's counters, a single field each: this runs every second
   * whatever the size of the mesh (a lookup and full decode per cluster took ~100 ms at 10,000).
   */
  private logNewEjections(): void {
    const changed: number[] = [];
    this.maps.clusterState.forEachBatched((key, value) => {
      const { id } = clusterIdKey.decode(key);
      if (!this.policies.has(id)) return;
      const total = value.readBigUInt64LE(EJECTIONS_TOTAL);
      if (total === (this.lastEjections.get(id) ?? 0n)) return;
      this.lastEjections.set(id, total);
      changed.push(id);
    });
    for (const id of changed) {
      const cluster = this.lookup.clusterName(id);
      if (cluster === undefined) continue;
      for (const ep of this.endpoints(cluster) ?? []) {
        if (!ep.healthy) {
          this.logger.warn(
            { cluster, endpoint: `${ep.address}:${ep.port}`, until: ep.ejectedUntil, timesEjected: ep.timesEjected },
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
