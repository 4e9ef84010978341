/**
 * The config the maps hold, by name: TOML's and xDS's resources, the merge of both (TOML is the operator's local
 * word and wins: an xDS cluster or listener of the same name, or an xDS listener on an address:port a TOML
 * listener binds, is left out and reported), and each effective resource's map encoding.
 *
 * A change is staged against these indexes: only the names it touches (and what they shadow, bind or name) are
 * merged, validated and encoded, and the result is a delta for the reconciler. Nothing here changes until the
 * maps took the delta (commit), so a refused change leaves everything as it was. The objects sources hand over
 * are kept as they are, never copied.
 */

import { KmeshError } from '../contracts/errors.js';
import type { ModelChange } from '../model/change.js';
import type { Cluster, Listener, MeshModel, ResourceSource } from '../model/types.js';
import { boundKey, clusterProblems, listenerClusterNames, listenerProblems, routeKey } from '../model/validate.js';
import { Slicer } from '../runtime/slicer.js';
import { assignClusterIds } from './cluster-ids.js';
import { type DesiredCluster, type DesiredListener, desiredCluster, desiredListener } from './desired-state.js';
import { type ConfigDelta, emptyDelta } from './reconciler.js';

interface SourceSet {
  clusters: Map<string, Cluster>;
  listeners: Map<string, Listener>;
}

interface EffectiveCluster {
  cluster: Cluster;
  desired: DesiredCluster;
}

interface EffectiveListener {
  listener: Listener;
  bound: string;
  desired: DesiredListener;
}

export interface StagedChange {
  delta: ConfigDelta;
  /** What xDS sent that TOML shadows, among the names this change touches. */
  shadowed: string[];
  /** Make the change the state's own; call once the maps hold the delta. */
  commit(): void;
}

/** Resources between two looks at the clock (an await per resource was ~6,000 microtasks in a full push). */
const SLICE_EVERY = 32;

const at = (kind: 'cluster' | 'listener', name: string) => (key: string) => `${kind} "${name}" ${key}`;

/** The whole model of a source as a change: everything in it set, every name it no longer has removed. */
export function replaceAll(before: MeshModel | SourceSet, after: MeshModel): ModelChange {
  const names = (items: Iterable<{ name: string }> | Map<string, unknown>) =>
    items instanceof Map ? [...items.keys()] : [...items].map((i) => i.name);
  const keepC = new Set(after.clusters.map((c) => c.name));
  const keepL = new Set(after.listeners.map((l) => l.name));
  return {
    upsertClusters: after.clusters,
    removeClusters: names(before.clusters).filter((n) => !keepC.has(n)),
    upsertListeners: after.listeners,
    removeListeners: names(before.listeners).filter((n) => !keepL.has(n)),
  };
}

export class MeshState {
  private readonly sources: Record<ResourceSource, SourceSet> = {
    toml: { clusters: new Map(), listeners: new Map() },
    xds: { clusters: new Map(), listeners: new Map() },
  };
  private readonly clusters = new Map<string, EffectiveCluster>();
  private readonly listeners = new Map<string, EffectiveListener>();
  /** Cluster id → name, for every effective cluster. */
  private readonly names = new Map<number, string>();
  /** Bound key → the effective listener there. */
  private readonly bound = new Map<string, string>();
  /** Bound key → the TOML listener there (it shadows xDS listeners on that key). */
  private tomlBound = new Map<string, string>();
  /** Bound key → xDS listeners on it, to re-examine when TOML starts or stops binding it. */
  private readonly xdsBound = new Map<string, Set<string>>();
  /** Cluster name → the effective listeners that name it. */
  private readonly referrers = new Map<string, Set<string>>();

  /** A source's resources as they are now (the xDS model is what a SotW resend compares against). */
  source(source: ResourceSource): SourceSet {
    return this.sources[source];
  }

  clusterName(id: number): string | undefined {
    return this.names.get(id);
  }

  /** The effective cluster of a name and its id (the resilience state is read by them). */
  cluster(name: string): { cluster: Cluster; id: number } | undefined {
    const c = this.clusters.get(name);
    return c ? { cluster: c.cluster, id: c.desired.id } : undefined;
  }

  /** The effective listener on a bound key (see boundKey). */
  listenerAt(bound: string): string | undefined {
    return this.bound.get(bound);
  }

  /** The merged config, for dumps. */
  model(): MeshModel {
    return {
      clusters: [...this.clusters.values()].map((c) => c.cluster),
      listeners: [...this.listeners.values()].map((l) => l.listener),
    };
  }

  /** Every effective entry (a restart reconciles the maps against all of them). */
  desiredKeys(): { clusters: Set<number>; listeners: Set<string> } {
    return {
      clusters: new Set([...this.clusters.values()].map((c) => c.desired.id)),
      listeners: new Set([...this.listeners.values()].map((l) => l.desired.keyHex)),
    };
  }

  /**
   * Merges, validates and encodes what `change` touches; throws InvalidConfig naming every problem. A large
   * change yields to the event loop through `slice` (nothing here changes until commit).
   */
  async stage(source: ResourceSource, change: ModelChange, slice = new Slicer()): Promise<StagedChange> {
    const errors: string[] = [];
    let step = 0;
    const own = this.sources[source];
    const srcClusters = overlay(own.clusters, change.upsertClusters, change.removeClusters, 'cluster', errors);
    const srcListeners = overlay(own.listeners, change.upsertListeners, change.removeListeners, 'listener', errors);
    const view = <T>(kind: ResourceSource, current: Map<string, T>, staged: Map<string, T | null>) =>
      kind === source
        ? (name: string) => (staged.has(name) ? (staged.get(name) ?? undefined) : current.get(name))
        : (name: string) => current.get(name);
    const tomlCluster = view('toml', this.sources.toml.clusters, srcClusters);
    const xdsCluster = view('xds', this.sources.xds.clusters, srcClusters);
    const tomlListener = view('toml', this.sources.toml.listeners, srcListeners);
    const xdsListener = view('xds', this.sources.xds.listeners, srcListeners);

    const touchedListeners = new Set(srcListeners.keys());
    let tomlBound = this.tomlBound;
    if (source === 'toml' && srcListeners.size > 0) {
      tomlBound = new Map();
      for (const [name, l] of this.sources.toml.listeners)
        if (!srcListeners.has(name)) tomlBound.set(boundKey(l), name);
      for (const [name, l] of srcListeners) if (l) tomlBound.set(boundKey(l), name);
      // xDS listeners where TOML starts or stops binding are shadowed or come back.
      for (const key of new Set([...tomlBound.keys(), ...this.tomlBound.keys()])) {
        if (tomlBound.get(key) === this.tomlBound.get(key)) continue;
        for (const name of this.xdsBound.get(key) ?? []) touchedListeners.add(name);
      }
    }

    const shadowed: string[] = [];
    const nextClusters = new Map<string, Cluster | null>();
    for (const name of srcClusters.keys()) {
      if (++step % SLICE_EVERY === 0) await slice.next();
      const toml = tomlCluster(name);
      const xds = xdsCluster(name);
      if (toml && xds) shadowed.push(`xDS cluster "${name}" is shadowed by the TOML cluster of that name`);
      const next = toml ?? xds ?? null;
      if (next !== (this.clusters.get(name)?.cluster ?? null)) nextClusters.set(name, next);
    }
    const nextListeners = new Map<string, Listener | null>();
    for (const name of touchedListeners) {
      if (++step % SLICE_EVERY === 0) await slice.next();
      const toml = tomlListener(name);
      const xds = xdsListener(name);
      let next = toml ?? null;
      if (toml && xds) shadowed.push(`xDS listener "${name}" is shadowed by the TOML listener of that name`);
      else if (xds && tomlBound.has(boundKey(xds))) {
        shadowed.push(
          `xDS listener "${name}" on ${xds.address}:${xds.port} is shadowed by a TOML listener on that address`,
        );
      } else if (xds) next = xds;
      if (next !== (this.listeners.get(name)?.listener ?? null)) nextListeners.set(name, next);
    }

    // Validation of what changes: the resources themselves, the addresses they bind, the clusters they name,
    // and the listeners that still name a cluster that goes.
    const clusterExists = (name: string) =>
      nextClusters.has(name) ? nextClusters.get(name) !== null : this.clusters.has(name);
    for (const [name, cluster] of nextClusters) {
      if (++step % SLICE_EVERY === 0) await slice.next();
      if (cluster) errors.push(...clusterProblems(cluster, at('cluster', name)));
    }
    const nextBound = new Map<string, string | null>();
    for (const name of nextListeners.keys()) {
      const before = this.listeners.get(name);
      if (before && this.bound.get(before.bound) === name) nextBound.set(before.bound, null);
    }
    for (const [name, listener] of nextListeners) {
      if (++step % SLICE_EVERY === 0) await slice.next();
      if (!listener) continue;
      const key = boundKey(listener);
      const owner = nextBound.has(key) ? nextBound.get(key) : this.bound.get(key);
      const other = owner && owner !== name ? owner : undefined;
      if (other === undefined) nextBound.set(key, name);
      errors.push(...listenerProblems(listener, at('listener', name), clusterExists, other));
    }
    for (const [name, cluster] of nextClusters) {
      if (cluster) continue;
      for (const referrer of this.referrers.get(name) ?? []) {
        if (nextListeners.has(referrer)) continue;
        const listener = (this.listeners.get(referrer) as EffectiveListener).listener;
        const i = listener.routes.findIndex((r) => r.cluster === name);
        const key = i >= 0 ? routeKey(listener, i) : 'virtual_hosts'; // named by an HTTP route only
        errors.push(`${at('listener', referrer)(key)}: unknown cluster "${name}"`);
      }
    }
    if (errors.length > 0) throw new KmeshError('InvalidConfig', errors.join('\n'));

    // Encoding: ids for new names (stable while a name lives), then the entries.
    const added = [...nextClusters].filter(([name, c]) => c && !this.clusters.has(name)).map(([name]) => name);
    const newIds = assignClusterIds(added, this.names);
    const idOf = (name: string) => newIds.get(name) ?? (this.clusters.get(name)?.desired.id as number);
    const delta = emptyDelta();
    const encodedClusters = new Map<string, EffectiveCluster | null>();
    for (const [name, cluster] of nextClusters) {
      if (++step % SLICE_EVERY === 0) await slice.next();
      const before = this.clusters.get(name);
      if (!cluster) {
        delta.clusters.set((before as EffectiveCluster).desired.id, null);
        encodedClusters.set(name, null);
        continue;
      }
      const desired = desiredCluster(cluster, idOf(name));
      delta.clusters.set(desired.id, desired);
      encodedClusters.set(name, { cluster, desired });
    }
    const encodedListeners = new Map<string, EffectiveListener | null>();
    for (const name of nextListeners.keys()) {
      const before = this.listeners.get(name);
      if (before) delta.listeners.set(before.desired.keyHex, null);
    }
    for (const [name, listener] of nextListeners) {
      if (++step % SLICE_EVERY === 0) await slice.next();
      if (!listener) {
        encodedListeners.set(name, null);
        continue;
      }
      const desired = desiredListener(listener, idOf);
      delta.listeners.set(desired.keyHex, desired);
      encodedListeners.set(name, { listener, bound: boundKey(listener), desired });
    }

    const commit = () => {
      if (source === 'xds') {
        for (const [name, next] of srcListeners) {
          const before = own.listeners.get(name);
          if (before) removeFrom(this.xdsBound, boundKey(before), name);
          if (next) getOrAdd(this.xdsBound, boundKey(next)).add(name);
        }
      }
      this.tomlBound = tomlBound;
      writeThrough(own.clusters, srcClusters);
      writeThrough(own.listeners, srcListeners);
      for (const [name, next] of encodedClusters) {
        const before = this.clusters.get(name);
        if (before) this.names.delete(before.desired.id);
        if (next) {
          this.clusters.set(name, next);
          this.names.set(next.desired.id, name);
        } else this.clusters.delete(name);
      }
      for (const [name, next] of encodedListeners) {
        const before = this.listeners.get(name);
        if (before) {
          if (this.bound.get(before.bound) === name) this.bound.delete(before.bound);
          for (const c of listenerClusterNames(before.listener)) removeFrom(this.referrers, c, name);
        }
        if (!next) {
          this.listeners.delete(name);
          continue;
        }
        this.listeners.set(name, next);
        this.bound.set(next.bound, name);
        for (const c of listenerClusterNames(next.listener)) getOrAdd(this.referrers, c).add(name);
      }
    };
    return { delta, shadowed, commit };
  }
}

/** A source's change by name: the new object, or null for a removal; objects already held are no change. */
function overlay<T extends { name: string }>(
  current: Map<string, T>,
  upserts: T[],
  removes: string[],
  kind: 'cluster' | 'listener',
  errors: string[],
): Map<string, T | null> {
  const staged = new Map<string, T | null>();
  for (const name of removes) if (current.has(name)) staged.set(name, null);
  const seen = new Set<string>();
  for (const item of upserts) {
    if (seen.has(item.name)) errors.push(`${at(kind, item.name)('name')}: duplicate ${kind} name "${item.name}"`);
    seen.add(item.name);
    if (current.get(item.name) === item) staged.delete(item.name);
    else staged.set(item.name, item);
  }
  return staged;
}

function writeThrough<T>(target: Map<string, T>, staged: Map<string, T | null>): void {
  for (const [name, item] of staged) {
    if (item) target.set(name, item);
    else target.delete(name);
  }
}

/** Index upkeep: a key whose set empties goes, so an index holds what is live and no more. */
function removeFrom<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(value);
  if (set.size === 0) map.delete(key);
}

function getOrAdd<K, V>(map: Map<K, Set<V>>, key: K): Set<V> {
  let set = map.get(key);
  if (!set) {
    set = new Set();
    map.set(key, set);
  }
  return set;
}
