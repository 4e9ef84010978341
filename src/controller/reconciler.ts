/**
 * Desired state → the live maps, as a diff, make-before-break:
 *  - a cluster whose endpoint set changes gets the new set written under a fresh
 *    generation first; only then does its cluster entry (one atomic hash update)
 *    point at it. A connect reads either the old or the new set, never a mix;
 *  - listeners are written after the clusters they name;
 *  - what is no longer referenced (old generations, removed clusters) is deleted
 *    after a grace period, so a connect that read the old pointer still finds it.
 * A failure part-way restores what was live before and reports; nothing is half-applied.
 */
import type { Logger } from 'pino';
import { KmeshError } from '../contracts/errors.js';
import { BPF_NOEXIST } from '../runtime/bpf-map.js';
import { BpfError } from '../runtime/errors.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import { clusterKey, clusterValue, endpointKey, rrValue } from '../runtime/maps/layouts.js';
import type { DesiredCluster, DesiredState } from './desired-state.js';

interface LiveCluster {
  lbPolicy: number;
  flags: number;
  totalWeight: number;
  generation: number;
  endpoints: Buffer[];
}

interface Retired {
  clusterId: number;
  generation: number;
  count: number;
  /** Also delete the cluster entry (the cluster was removed). */
  dropCluster: boolean;
  due: number;
}

export interface ApplyResult {
  written: number;
  deleted: number;
  unchanged: number;
}

const EEXIST = 17;

export class Reconciler {
  private listeners = new Map<string, Buffer>();
  private clusters = new Map<number, LiveCluster>();
  private retired: Retired[] = [];
  private nextGeneration = 1;
  private gcTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly maps: DatapathMaps,
    private readonly logger: Logger,
    private readonly graceMs = 1000,
  ) {}

  /** Take over what a previous daemon left in the pinned maps; drop half-written leftovers. */
  adopt(): void {
    for (const [key, value] of this.maps.listeners.entries()) this.listeners.set(key.toString('hex'), value);
    const byGeneration = new Map<string, Map<number, Buffer>>();
    for (const [key, value] of this.maps.endpoints.entries()) {
      const k = endpointKey.decode(key);
      const slot = `${k.cluster_id}/${k.generation}`;
      if (!byGeneration.has(slot)) byGeneration.set(slot, new Map());
      byGeneration.get(slot)?.set(k.index, value);
      this.nextGeneration = Math.max(this.nextGeneration, k.generation + 1);
    }
    for (const [key, value] of this.maps.clusters.entries()) {
      const id = clusterKey.decode(key).id;
      const v = clusterValue.decode(value);
      const set = byGeneration.get(`${id}/${v.generation}`) ?? new Map<number, Buffer>();
      this.clusters.set(id, {
        lbPolicy: v.lb_policy,
        flags: v.flags,
        totalWeight: v.total_weight,
        generation: v.generation,
        endpoints: Array.from({ length: v.endpoint_count }, (_, i) => set.get(i) ?? Buffer.alloc(0)),
      });
      this.nextGeneration = Math.max(this.nextGeneration, v.generation + 1);
    }
    let stray = 0;
    for (const [slot, entries] of byGeneration) {
      const [id, generation] = slot.split('/').map(Number) as [number, number];
      if (this.clusters.get(id)?.generation === generation) continue;
      for (const index of entries.keys())
        this.maps.endpoints.delete(endpointKey.encode({ cluster_id: id, generation, index }));
      stray += entries.size;
    }
    this.logger.info(
      { listeners: this.listeners.size, clusters: this.clusters.size, strayEndpoints: stray },
      'adopted pinned maps',
    );
  }

  apply(desired: DesiredState): ApplyResult {
    const changed = [...desired.clusters.values()].filter((c) => !this.sameCluster(c));
    const removedClusters = [...this.clusters.keys()].filter((id) => !desired.clusters.has(id));
    const changedListeners = [...desired.listeners].filter(([hex, l]) => {
      const live = this.listeners.get(hex);
      return live !== l.value && !live?.equals(l.value);
    });
    const removedListeners = [...this.listeners.keys()].filter((hex) => !desired.listeners.has(hex));
    this.checkCapacity(desired, changed);

    const undo: Array<() => void> = [];
    let written = 0;
    try {
      for (const cluster of changed) written += this.writeCluster(cluster, undo);
      for (const [hex, listener] of changedListeners) {
        const before = this.listeners.get(hex);
        this.maps.listeners.update(listener.key, listener.value);
        undo.push(() =>
          before ? this.maps.listeners.update(listener.key, before) : this.maps.listeners.delete(listener.key),
        );
        written++;
      }
    } catch (err) {
      for (const step of undo.reverse()) {
        try {
          step();
        } catch (undoErr) {
          this.logger.error({ err: undoErr }, 'rollback step failed');
        }
      }
      throw asKmeshError(err);
    }

    // Commit: from here on only removals, which cannot leave a listener without its cluster.
    for (const hex of removedListeners) this.maps.listeners.delete(Buffer.from(hex, 'hex'));
    const now = Date.now();
    for (const cluster of changed) {
      const before = this.clusters.get(cluster.id);
      if (before && before.endpoints.length > 0 && before.generation !== this.generationOf(cluster)) {
        this.retire({
          clusterId: cluster.id,
          generation: before.generation,
          count: before.endpoints.length,
          dropCluster: false,
          due: now,
        });
      }
    }
    for (const id of removedClusters) {
      const before = this.clusters.get(id) as LiveCluster;
      this.retire({
        clusterId: id,
        generation: before.generation,
        count: before.endpoints.length,
        dropCluster: true,
        due: now,
      });
      this.clusters.delete(id);
    }
    for (const cluster of changed) this.clusters.set(cluster.id, this.pendingLive.get(cluster.id) as LiveCluster);
    this.pendingLive.clear();
    this.listeners = new Map([...desired.listeners].map(([hex, l]) => [hex, l.value]));
    this.scheduleGc();
    return {
      written,
      deleted: removedListeners.length + removedClusters.length,
      unchanged: desired.listeners.size - changedListeners.length + desired.clusters.size - changed.length,
    };
  }

  counts(): { listeners: number; clusters: number; endpoints: number } {
    let endpoints = 0;
    for (const c of this.clusters.values()) endpoints += c.endpoints.length;
    return { listeners: this.listeners.size, clusters: this.clusters.size, endpoints };
  }

  /** Delete everything retired now (shutdown): nothing waits for a timer that will not fire. */
  flush(): void {
    clearTimeout(this.gcTimer);
    this.gcTimer = undefined;
    this.collect(Number.POSITIVE_INFINITY);
  }

  private readonly pendingLive = new Map<number, LiveCluster>();

  private generationOf(cluster: DesiredCluster): number {
    return this.pendingLive.get(cluster.id)?.generation ?? -1;
  }

  private sameCluster(c: DesiredCluster): boolean {
    const live = this.clusters.get(c.id);
    return (
      live !== undefined &&
      live.lbPolicy === c.lbPolicy &&
      live.flags === c.flags &&
      live.totalWeight === c.totalWeight &&
      this.sameEndpoints(live, c)
    );
  }

  private sameEndpoints(live: LiveCluster | undefined, c: DesiredCluster): boolean {
    if (live?.endpoints === c.endpoints) return true;
    return (
      live !== undefined &&
      live.endpoints.length === c.endpoints.length &&
      live.endpoints.every((ep, i) => ep.equals(c.endpoints[i] as Buffer))
    );
  }

  /** Writes the endpoints (new generation unless only the policy changed), then flips the cluster entry. */
  private writeCluster(cluster: DesiredCluster, undo: Array<() => void>): number {
    const live = this.clusters.get(cluster.id);
    const reuse = this.sameEndpoints(live, cluster);
    const generation = reuse && live ? live.generation : this.nextGeneration++;
    let written = 0;
    if (!reuse) {
      cluster.endpoints.forEach((value, index) => {
        const key = endpointKey.encode({ cluster_id: cluster.id, generation, index });
        this.maps.endpoints.update(key, value);
        undo.push(() => this.maps.endpoints.delete(key));
        written++;
      });
    }
    const rrKey = clusterKey.encode({ id: cluster.id });
    try {
      this.maps.roundRobin.update(rrKey, rrValue.encode({}), BPF_NOEXIST);
      undo.push(() => this.maps.roundRobin.delete(rrKey));
    } catch (err) {
      // The cursor of a cluster that already exists keeps its place in the order.
      if (!(err instanceof BpfError && err.errno === EEXIST)) throw err;
    }
    const key = clusterKey.encode({ id: cluster.id });
    const previous = this.maps.clusters.lookup(key);
    this.maps.clusters.update(
      key,
      clusterValue.encode({
        lb_policy: cluster.lbPolicy,
        generation,
        endpoint_count: cluster.endpoints.length,
        total_weight: cluster.totalWeight,
        flags: cluster.flags,
      }),
    );
    undo.push(() => (previous ? this.maps.clusters.update(key, previous) : this.maps.clusters.delete(key)));
    this.pendingLive.set(cluster.id, {
      lbPolicy: cluster.lbPolicy,
      flags: cluster.flags,
      totalWeight: cluster.totalWeight,
      generation,
      endpoints: cluster.endpoints,
    });
    return written + 1;
  }

  /** Refuse before writing anything when the result would not fit (old generations count until collected). */
  private checkCapacity(desired: DesiredState, changed: DesiredCluster[]): void {
    const { listeners, clusters, endpoints } = this.maps;
    let endpointEntries = 0;
    for (const c of this.clusters.values()) endpointEntries += c.endpoints.length;
    for (const r of this.retired) endpointEntries += r.count;
    for (const c of changed) endpointEntries += c.endpoints.length;
    const problems: string[] = [];
    if (desired.listeners.size > listeners.maxEntries) {
      problems.push(`${desired.listeners.size} listeners exceed the listener map capacity of ${listeners.maxEntries}`);
    }
    // Removed clusters keep their entry until the grace period ends.
    const retiredClusters = this.retired.filter((r) => r.dropCluster).map((r) => r.clusterId);
    const clusterEntries = new Set([...this.clusters.keys(), ...desired.clusters.keys(), ...retiredClusters]).size;
    if (clusterEntries > clusters.maxEntries) {
      problems.push(
        `${clusterEntries} cluster entries (live, new and being removed) exceed the cluster map capacity of ${clusters.maxEntries}`,
      );
    }
    if (endpointEntries > endpoints.maxEntries) {
      problems.push(
        `${endpointEntries} endpoint entries (live + being replaced) exceed the endpoint map capacity of ${endpoints.maxEntries}`,
      );
    }
    if (problems.length > 0) throw new KmeshError('CapacityExceeded', problems.join('; '));
  }

  private retire(entry: Retired): void {
    entry.due += this.graceMs;
    this.retired.push(entry);
  }

  private scheduleGc(): void {
    if (this.gcTimer || this.retired.length === 0) return;
    this.gcTimer = setTimeout(() => {
      this.gcTimer = undefined;
      this.collect(Date.now());
      this.scheduleGc();
    }, this.graceMs);
    this.gcTimer.unref();
  }

  private collect(now: number): void {
    const keep: Retired[] = [];
    for (const r of this.retired) {
      if (r.due > now) {
        keep.push(r);
        continue;
      }
      for (let index = 0; index < r.count; index++) {
        this.maps.endpoints.delete(endpointKey.encode({ cluster_id: r.clusterId, generation: r.generation, index }));
      }
      // A cluster removed and then re-added within the grace period is live again: keep it.
      if (r.dropCluster && !this.clusters.has(r.clusterId)) {
        const key = clusterKey.encode({ id: r.clusterId });
        this.maps.clusters.delete(key);
        this.maps.roundRobin.delete(key);
      }
    }
    this.retired = keep;
  }
}

function asKmeshError(err: unknown): KmeshError {
  if (err instanceof KmeshError) return err;
  if (err instanceof BpfError && (err.errno === 7 || err.errno === 12 || err.errno === 28)) {
    return new KmeshError(
      'CapacityExceeded',
      `map full while applying: ${err.message}; the previous config stays live`,
    );
  }
  return new KmeshError('Failed', `applying config failed: ${(err as Error).message}; the previous config stays live`);
}
