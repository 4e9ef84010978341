/**
 * A config change → the live maps, as a diff, atomically:
 *  - listener and cluster entries exist once per config slot; the programs read only the active slot.
 *    A change is written into the inactive slot, then one update of kmesh_active_slot makes it live.
 *    Whenever the daemon dies, the kernel sees the whole old or the whole new config;
 *  - a cluster whose endpoint set changes gets the new set under a fresh generation first (make-before-break):
 *    both slots point at generations that are complete;
 *  - the slot that just went inactive keeps the previous config for a grace period (a connect that read the
 *    old slot number finds everything it needs), then the same diff is replayed into it, and the old endpoint
 *    generations and removed clusters' cursors are deleted.
 * A failure before the flip undoes the new endpoint sets and leaves the previous config live; the inactive slot
 * is only marked for re-sync. The cost of an apply follows the size of the change, never the size of the mesh.
 */
import type { Logger } from 'pino';
import { KmeshError } from '../contracts/errors.js';
import { BpfError } from '../runtime/errors.js';
import { MapBatch } from '../runtime/maps/batch.js';
import type { DatapathMaps, MapAccess } from '../runtime/maps/datapath-maps.js';
import {
  activeSlotKey,
  activeSlotValue,
  CONFIG_SLOTS,
  clusterIdKey,
  clusterKey,
  clusterValue,
  endpointKey,
  endpointValue,
  genKey,
  listenerKey,
  listenerValue,
  rrValue,
  tableKey,
} from '../runtime/maps/layouts.js';
import { Slicer } from '../runtime/slicer.js';
import type { DesiredCluster, DesiredListener } from './desired-state.js';
import { OriginIndex } from './origin-index.js';

/** What one apply changes: named entries are set whole (or removed: null); all others stay. */
export interface ConfigDelta {
  /** By cluster id. */
  clusters: Map<number, DesiredCluster | null>;
  /** By DesiredListener.keyHex. */
  listeners: Map<string, DesiredListener | null>;
}

export function emptyDelta(): ConfigDelta {
  return { clusters: new Map(), listeners: new Map() };
}

export interface ApplyResult {
  /** Entries written into the new config (endpoints, clusters, listeners). */
  written: number;
  /** Listeners and clusters removed. */
  deleted: number;
  /** Resources named by the change that were already live as they are. */
  unchanged: number;
}

export type ReconcilerMaps = { [K in keyof DatapathMaps]: MapAccess };

interface LiveCluster {
  generation: number;
  /** Endpoint values, count × kmesh_endpoint_value (shared with the DesiredCluster it came from). */
  endpoints: Buffer;
  /** The encoded kmesh_cluster_value. */
  value: Buffer;
  /** What else the generation has (resilience): its kmesh_levels entry and kmesh_lb_table chunks. */
  extras: GenerationExtras;
}

interface GenerationExtras {
  levels: boolean;
  tableChunks: number;
}

const NO_EXTRAS: GenerationExtras = { levels: false, tableChunks: 0 };

interface LiveListener {
  /** kmesh_listener_key with slot 0. */
  key: Buffer;
  value: Buffer;
}

interface Retired {
  clusterId: number;
  generation: number;
  count: number;
  extras: GenerationExtras;
  due: number;
}

const SLOT_OFFSET = listenerKey.offsetOf('slot');
const ACTIVE_KEY = activeSlotKey.encode({ index: 0 });
const ENDPOINT_SIZE = endpointValue.size;
const INDEX_OFFSET = endpointKey.offsetOf('index');
/** A new round-robin cursor: at the first endpoint. */
const RR_START = rrValue.encode({});

/** Clusters or listeners between two looks at the clock (an await each is a microtask and a promise). */
const SLICE_EVERY = 32;

const endpointCount = (endpoints: Buffer) => endpoints.length / ENDPOINT_SIZE;

function listenerKeyIn(key: Buffer, slot: number): Buffer {
  const inSlot = Buffer.from(key);
  inSlot[SLOT_OFFSET] = slot;
  return inSlot;
}

const clusterKeyIn = (id: number, slot: number) => clusterKey.encode({ id, slot });

export class Reconciler {
  private active = 0;
  private readonly listeners = new Map<string, LiveListener>();
  private readonly clusters = new Map<number, LiveCluster>();
  /** Keys whose entry in the inactive slot may differ from the live one: replayed after the grace period. */
  private stale = { listeners: new Set<string>(), clusters: new Set<number>() };
  private retired: Retired[] = [];
  /** Round-robin cursors of clusters that are gone: deleted with their last endpoint set. */
  private readonly orphanCursors = new Set<number>();
  private liveEndpoints = 0;
  private retiredEndpoints = 0;
  private nextGeneration = 1;
  /** When the inactive slot may be written (a connect may still read it until then). */
  private replayAfter = 0;
  private gcTimer: NodeJS.Timeout | undefined;
  /** Applies and the grace-period work run one at a time (both write the inactive slot). */
  private turn: Promise<unknown> = Promise.resolve();
  /** kmesh_ep_origin, kept in step with the live config. */
  private readonly origins: OriginIndex;

  constructor(
    private readonly maps: ReconcilerMaps,
    private readonly logger: Logger,
    private readonly graceMs = 1000,
  ) {
    this.origins = new OriginIndex(maps.endpointOrigin, logger);
  }

  /** The live config's slot (what the kernel reads). */
  get activeSlot(): number {
    return this.active;
  }

  /**
   * Take over what a previous daemon left in the pinned maps: the active slot is the live config (whatever
   * instant that daemon died at); the other slot is re-synced by a diff; endpoint sets no live cluster uses go.
   */
  adopt(): void {
    const word = this.maps.activeSlot.lookup(ACTIVE_KEY);
    this.active = word ? activeSlotValue.decode(word).slot % CONFIG_SLOTS : 0;
    const inactive = new Map<string, Buffer>();
    for (const [key, value] of this.maps.listeners.entries()) {
      const neutral = listenerKeyIn(key, 0);
      const hex = neutral.toString('hex');
      if (key[SLOT_OFFSET] === this.active) this.listeners.set(hex, { key: neutral, value });
      else inactive.set(hex, value);
    }
    for (const hex of new Set([...this.listeners.keys(), ...inactive.keys()])) {
      const live = this.listeners.get(hex)?.value;
      const other = inactive.get(hex);
      if (!live || !other || !live.equals(other)) this.stale.listeners.add(hex);
    }

    const sets = new Map<string, Map<number, Buffer>>();
    for (const [key, value] of this.maps.endpoints.entries()) {
      const k = endpointKey.decode(key);
      const set = `${k.cluster_id}/${k.generation}`;
      if (!sets.has(set)) sets.set(set, new Map());
      sets.get(set)?.set(k.index, value);
      this.nextGeneration = Math.max(this.nextGeneration, k.generation + 1);
    }
    const extras = this.adoptExtras();
    const inactiveClusters = new Map<number, Buffer>();
    for (const [key, value] of this.maps.clusters.entries()) {
      const { id, slot } = clusterKey.decode(key);
      const v = clusterValue.decode(value);
      this.nextGeneration = Math.max(this.nextGeneration, v.generation + 1);
      if (slot !== this.active) {
        inactiveClusters.set(id, value);
        continue;
      }
      const set = sets.get(`${id}/${v.generation}`);
      const endpoints = Array.from({ length: v.endpoint_count }, (_, i) => set?.get(i));
      // An incomplete set (never expected) reads as "different", so the next apply writes it anew.
      const complete = endpoints.every((ep) => ep !== undefined);
      this.clusters.set(id, {
        generation: v.generation,
        endpoints: complete ? Buffer.concat(endpoints as Buffer[]) : Buffer.alloc(0),
        value,
        extras: extras.get(`${id}/${v.generation}`) ?? NO_EXTRAS,
      });
      this.liveEndpoints += v.endpoint_count;
    }
    for (const id of new Set([...this.clusters.keys(), ...inactiveClusters.keys()])) {
      const live = this.clusters.get(id)?.value;
      const other = inactiveClusters.get(id);
      if (!live || !other || !live.equals(other)) this.stale.clusters.add(id);
    }
    for (const key of this.maps.roundRobin.entries().map(([k]) => clusterIdKey.decode(k).id)) {
      if (!this.clusters.has(key)) this.orphanCursors.add(key);
    }
    this.origins.adopt();
    for (const [id, live] of this.clusters) this.origins.setCluster(id, live.endpoints);
    for (const [hex, live] of this.listeners) this.origins.setListener(hex, live);
    void this.origins.flush();
    let stray = 0;
    for (const [set, found] of extras) {
      const [id, generation] = set.split('/').map(Number) as [number, number];
      if (this.clusters.get(id)?.generation !== generation) this.deleteExtras(id, generation, found);
    }
    for (const [set, entries] of sets) {
      const [id, generation] = set.split('/').map(Number) as [number, number];
      if (this.clusters.get(id)?.generation === generation) continue;
      for (const index of entries.keys())
        this.maps.endpoints.delete(endpointKey.encode({ cluster_id: id, generation, index }));
      stray += entries.size;
    }
    this.logger.info(
      {
        activeSlot: this.active,
        listeners: this.listeners.size,
        clusters: this.clusters.size,
        toResync: this.stale.listeners.size + this.stale.clusters.size,
        strayEndpoints: stray,
      },
      'adopted pinned maps',
    );
    this.scheduleGc();
  }

  /** What the maps hold now, as keys (to compute a whole-config delta: what is live and not desired goes). */
  liveKeys(): { clusters: Iterable<number>; listeners: Iterable<string> } {
    return { clusters: this.clusters.keys(), listeners: this.listeners.keys() };
  }

  /** Applies `delta` (see the file comment); resolves once the kernel reads the new config, rejects leaving the old. */
  apply(delta: ConfigDelta): Promise<ApplyResult> {
    return this.exclusive(() => this.applyNow(delta));
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const done = this.turn.then(work);
    this.turn = done.catch(() => {});
    return done;
  }

  private async applyNow(delta: ConfigDelta): Promise<ApplyResult> {
    const changedClusters: DesiredCluster[] = [];
    const removedClusters: number[] = [];
    let unchanged = 0;
    for (const [id, desired] of delta.clusters) {
      if (desired === null) {
        if (this.clusters.has(id)) removedClusters.push(id);
      } else if (this.sameCluster(desired)) unchanged++;
      else changedClusters.push(desired);
    }
    const changedListeners: DesiredListener[] = [];
    const removedListeners: string[] = [];
    for (const [hex, desired] of delta.listeners) {
      const live = this.listeners.get(hex);
      if (desired === null) {
        if (live) removedListeners.push(hex);
      } else if (live && (live.value === desired.value || live.value.equals(desired.value))) unchanged++;
      else changedListeners.push(desired);
    }
    const result = {
      written: 0,
      deleted: removedClusters.length + removedListeners.length,
      unchanged,
    };
    if (changedClusters.length + changedListeners.length + result.deleted === 0) return result;
    this.checkCapacity(changedClusters, removedClusters, changedListeners, removedListeners);

    const next = 1 - this.active;
    const undo: Array<() => void> = [];
    const fresh = new Map<number, LiveCluster>();
    const slice = new Slicer();
    try {
      const endpoints = new MapBatch(this.maps.endpoints, endpointKey.size, ENDPOINT_SIZE);
      const cursors = new MapBatch(this.maps.roundRobin, clusterIdKey.size, rrValue.size);
      for (const cluster of changedClusters) {
        const entry = await this.prepareCluster(cluster, undo, slice, endpoints, cursors);
        result.written += entry.written;
        fresh.set(cluster.id, entry.live);
      }
      endpoints.flush(); // every new endpoint set is whole before any cluster entry names it
      cursors.flush();
      // The inactive slot: what it still lacks from the last apply plus this change (stale until overwritten).
      for (const hex of removedListeners) this.stale.listeners.add(hex);
      for (const id of removedClusters) this.stale.clusters.add(id);
      for (const l of changedListeners) this.stale.listeners.add(l.keyHex);
      for (const id of fresh.keys()) this.stale.clusters.add(id);
      await this.writeSlot(
        slice,
        next,
        (hex) => {
          const desired = delta.listeners.get(hex);
          return desired === undefined ? this.listeners.get(hex) : (desired ?? undefined);
        },
        (id) =>
          fresh.has(id)
            ? fresh.get(id)?.value
            : delta.clusters.get(id) === null
              ? undefined
              : this.clusters.get(id)?.value,
      );
      result.written += changedListeners.length + changedClusters.length;
      this.maps.activeSlot.update(ACTIVE_KEY, activeSlotValue.encode({ slot: next }));
    } catch (err) {
      for (const step of undo.reverse()) {
        try {
          step();
        } catch (undoErr) {
          this.logger.error({ err: undoErr }, 'rollback step failed');
        }
      }
      this.scheduleGc();
      throw asKmeshError(err);
    }

    // Committed: the new slot is live. The old one keeps the previous config until the grace period ends;
    // every key this apply changed is what it lacks.
    this.active = next;
    this.replayAfter = Date.now() + this.graceMs;
    this.stale.listeners = new Set([...removedListeners, ...changedListeners.map((l) => l.keyHex)]);
    this.stale.clusters = new Set([...removedClusters, ...fresh.keys()]);
    const due = this.replayAfter;
    for (const hex of removedListeners) this.listeners.delete(hex);
    for (const listener of changedListeners)
      this.listeners.set(listener.keyHex, { key: listener.key, value: listener.value });
    for (const id of removedClusters) {
      this.retireCluster(id, due);
      this.orphanCursors.add(id);
    }
    for (const [id, live] of fresh) {
      this.orphanCursors.delete(id);
      const before = this.clusters.get(id);
      if (before && before.generation !== live.generation) this.retireCluster(id, due);
      else if (before) this.liveEndpoints -= endpointCount(before.endpoints);
      this.clusters.set(id, live);
      this.liveEndpoints += endpointCount(live.endpoints);
    }
    // After the commit and in slices, like the writes before it: until its entry is written, a plain connect to
    // an endpoint keeps an origin of its own, which is correct, only slower.
    for (const id of removedClusters) this.origins.setCluster(id, null);
    let step = 0;
    for (const [id, live] of fresh) {
      this.origins.setCluster(id, live.endpoints);
      if (++step % SLICE_EVERY === 0) await slice.next();
    }
    for (const hex of removedListeners) this.origins.setListener(hex, null);
    for (const listener of changedListeners) {
      this.origins.setListener(listener.keyHex, listener);
      if (++step % SLICE_EVERY === 0) await slice.next();
    }
    await this.origins.flush(slice);
    this.scheduleGc();
    return result;
  }

  counts(): { listeners: number; clusters: number; endpoints: number } {
    return { listeners: this.listeners.size, clusters: this.clusters.size, endpoints: this.liveEndpoints };
  }

  /** Finish now what waits for the grace period (shutdown): nothing waits for a timer that will not fire. */
  flush(): Promise<void> {
    clearTimeout(this.gcTimer);
    this.gcTimer = undefined;
    return this.exclusive(() => this.collect(Number.POSITIVE_INFINITY));
  }

  private sameCluster(c: DesiredCluster): boolean {
    const live = this.clusters.get(c.id);
    if (!live) return false;
    return this.sameEndpoints(live, c) && live.value.equals(this.clusterValueOf(c, live.generation));
  }

  private sameEndpoints(live: LiveCluster | undefined, c: DesiredCluster): boolean {
    return live !== undefined && (live.endpoints === c.endpoints || live.endpoints.equals(c.endpoints));
  }

  private clusterValueOf(c: DesiredCluster, generation: number): Buffer {
    return clusterValue.encode({
      lb_policy: c.lbPolicy,
      generation,
      endpoint_count: endpointCount(c.endpoints),
      total_weight: c.totalWeight,
      flags: c.flags,
    });
  }

  /**
   * Writes the endpoint set under a new generation (unless only the policy changed; a consistent-hash table
   * belongs to its policy, so a policy change with a table takes a new generation too) and the cursor.
   */
  private async prepareCluster(
    cluster: DesiredCluster,
    undo: Array<() => void>,
    slice: Slicer,
    endpoints: MapBatch,
    cursors: MapBatch,
  ): Promise<{ live: LiveCluster; written: number }> {
    const before = this.clusters.get(cluster.id);
    const samePolicy = before !== undefined && clusterValue.decode(before.value).lb_policy === cluster.lbPolicy;
    const reuse =
      this.sameEndpoints(before, cluster) && (samePolicy || (!cluster.table && !before?.extras.tableChunks));
    const generation = reuse && before ? before.generation : this.nextGeneration++;
    let written = 0;
    if (!reuse) {
      const count = endpointCount(cluster.endpoints);
      const key = endpointKey.encode({ cluster_id: cluster.id, generation, index: 0 });
      undo.push(() => {
        for (let index = 0; index < count; index++) {
          key.writeUInt32LE(index, INDEX_OFFSET);
          this.maps.endpoints.delete(key);
        }
      });
      for (let index = 0; index < count; index++) {
        if (endpoints.full) {
          endpoints.flush();
          await slice.next();
        }
        const slot = endpoints.add(cluster.endpoints, index * ENDPOINT_SIZE);
        key.copy(slot);
        slot.writeUInt32LE(index, INDEX_OFFSET);
      }
      written += count;
      written += this.writeExtras(cluster, generation, undo);
    }
    // A new cluster's cursor, batched (1,000 of them in a full push). Cursors exist for the live clusters and the
    // orphans only (the programs never create one), so nothing else is overwritten; re-added within the grace
    // period, the cursor keeps its place in the order.
    if (!before && !this.orphanCursors.has(cluster.id)) {
      const rrKey = clusterIdKey.encode({ id: cluster.id });
      undo.push(() => this.maps.roundRobin.delete(rrKey));
      rrKey.copy(cursors.add(RR_START));
    }
    return {
      live: {
        generation,
        endpoints: cluster.endpoints,
        value: this.clusterValueOf(cluster, generation),
        extras:
          reuse && before
            ? before.extras
            : { levels: cluster.levels !== undefined, tableChunks: cluster.table?.length ?? 0 },
      },
      written,
    };
  }

  /** The generation's priority levels and consistent-hash table, before any cluster entry points at it. */
  private writeExtras(cluster: DesiredCluster, generation: number, undo: Array<() => void>): number {
    let written = 0;
    if (cluster.levels) {
      const key = genKey.encode({ cluster_id: cluster.id, generation });
      this.maps.levels.update(key, cluster.levels);
      undo.push(() => this.maps.levels.delete(key));
      written++;
    }
    cluster.table?.forEach((chunk, index) => {
      const key = tableKey.encode({ cluster_id: cluster.id, generation, chunk: index });
      this.maps.lbTable.update(key, chunk);
      undo.push(() => this.maps.lbTable.delete(key));
      written++;
    });
    return written;
  }

  private deleteExtras(clusterId: number, generation: number, extras: GenerationExtras): void {
    if (extras.levels) this.maps.levels.delete(genKey.encode({ cluster_id: clusterId, generation }));
    for (let chunk = 0; chunk < extras.tableChunks; chunk++) {
      this.maps.lbTable.delete(tableKey.encode({ cluster_id: clusterId, generation, chunk }));
    }
  }

  /** Levels and table chunks found in the pinned maps, by "<cluster id>/<generation>". */
  private adoptExtras(): Map<string, GenerationExtras> {
    const found = new Map<string, GenerationExtras>();
    const slot = (id: number, generation: number) => {
      const key = `${id}/${generation}`;
      let entry = found.get(key);
      if (!entry) {
        entry = { levels: false, tableChunks: 0 };
        found.set(key, entry);
      }
      return entry;
    };
    for (const [key] of this.maps.levels.entries()) {
      const k = genKey.decode(key);
      slot(k.cluster_id, k.generation).levels = true;
    }
    for (const [key] of this.maps.lbTable.entries()) {
      const k = tableKey.decode(key);
      const entry = slot(k.cluster_id, k.generation);
      entry.tableChunks = Math.max(entry.tableChunks, k.chunk + 1);
    }
    return found;
  }

  /**
   * Writes every stale key's target into `slot` (absent: deleted), deletions first so that the slot never holds
   * more than one config. The keys written are added to `written`; whether they stop being stale is the
   * caller's to decide.
   */
  private async writeSlot(
    slice: Slicer,
    slot: number,
    listenerOf: (hex: string) => LiveListener | undefined,
    clusterOf: (id: number) => Buffer | undefined,
    written?: { listeners: Set<string>; clusters: Set<number> },
  ): Promise<void> {
    await this.writeKeys(
      slice,
      this.stale.listeners,
      this.maps.listeners,
      { key: listenerKey.size, value: listenerValue.size },
      (hex, into) => {
        into.write(hex, 'hex'); // the slot-neutral key
        into[SLOT_OFFSET] = slot;
      },
      (hex) => listenerOf(hex)?.value,
      written?.listeners,
    );
    await this.writeKeys(
      slice,
      this.stale.clusters,
      this.maps.clusters,
      { key: clusterKey.size, value: clusterValue.size },
      (id, into) => clusterKeyIn(id, slot).copy(into),
      clusterOf,
      written?.clusters,
    );
  }

  /** Deletes the keys without a value, then writes the others in batches; `done` gets each key once it is written. */
  private async writeKeys<K>(
    slice: Slicer,
    keys: Iterable<K>,
    map: MapAccess,
    sizes: { key: number; value: number },
    keyOf: (k: K, into: Buffer) => void,
    target: (k: K) => Buffer | undefined,
    done?: Set<K>,
  ): Promise<void> {
    const updates: Array<[K, Buffer]> = [];
    const key = Buffer.alloc(sizes.key);
    for (const k of keys) {
      const value = target(k);
      if (value) {
        updates.push([k, value]);
        continue;
      }
      await slice.next();
      keyOf(k, key);
      map.delete(key);
      done?.add(k);
    }
    const batch = new MapBatch(map, sizes.key, sizes.value);
    let pending: K[] = [];
    const flush = () => {
      batch.flush();
      for (const k of pending) done?.add(k);
      pending = [];
    };
    for (const [k, value] of updates) {
      if (batch.full) {
        flush();
        await slice.next();
      }
      keyOf(k, batch.add(value));
      pending.push(k);
    }
    flush();
  }

  /** Refuse before writing anything when the result would not fit (old generations count until collected). */
  private checkCapacity(
    changedClusters: DesiredCluster[],
    removedClusters: number[],
    changedListeners: DesiredListener[],
    removedListeners: string[],
  ): void {
    const perSlot = (map: MapAccess) => map.maxEntries / CONFIG_SLOTS;
    const added = <T>(items: T[], has: (item: T) => boolean) => items.filter((item) => !has(item)).length;
    const listenerCount =
      this.listeners.size + added(changedListeners, (l) => this.listeners.has(l.keyHex)) - removedListeners.length;
    const clusterCount =
      this.clusters.size + added(changedClusters, (c) => this.clusters.has(c.id)) - removedClusters.length;
    let endpointEntries = this.liveEndpoints + this.retiredEndpoints;
    for (const c of changedClusters) endpointEntries += endpointCount(c.endpoints);
    const problems: string[] = [];
    if (listenerCount > perSlot(this.maps.listeners)) {
      problems.push(`${listenerCount} listeners exceed the listener map capacity of ${perSlot(this.maps.listeners)}`);
    }
    if (clusterCount > perSlot(this.maps.clusters)) {
      problems.push(`${clusterCount} clusters exceed the cluster map capacity of ${perSlot(this.maps.clusters)}`);
    }
    // Cursors of removed clusters stay until the grace period ends.
    const cursors = clusterCount + removedClusters.length + this.orphanCursors.size;
    if (cursors > this.maps.roundRobin.maxEntries) {
      problems.push(
        `${cursors} cluster entries (live, new and being removed) exceed the cluster map capacity of ${this.maps.roundRobin.maxEntries}`,
      );
    }
    if (endpointEntries > this.maps.endpoints.maxEntries) {
      problems.push(
        `${endpointEntries} endpoint entries (live + being replaced) exceed the endpoint map capacity of ${this.maps.endpoints.maxEntries}`,
      );
    }
    if (problems.length > 0) throw new KmeshError('CapacityExceeded', problems.join('; '));
  }

  /** The cluster's live endpoint set (and its entry, when the cluster is gone) goes after the grace period. */
  private retireCluster(id: number, due: number): void {
    const before = this.clusters.get(id) as LiveCluster;
    const count = endpointCount(before.endpoints);
    if (count > 0)
      this.retired.push({ clusterId: id, generation: before.generation, count, extras: before.extras, due });
    this.retiredEndpoints += count;
    this.liveEndpoints -= count;
    this.clusters.delete(id);
  }

  private scheduleGc(): void {
    if (this.gcTimer || (this.retired.length === 0 && this.stale.clusters.size + this.stale.listeners.size === 0))
      return;
    const wait = Math.max(0, Math.min(this.replayAfter, ...this.retired.map((r) => r.due)) - Date.now());
    this.gcTimer = setTimeout(() => {
      this.gcTimer = undefined;
      this.exclusive(() => this.collect(Date.now())).finally(() => this.scheduleGc());
    }, wait);
    this.gcTimer.unref();
  }

  private async collect(now: number): Promise<void> {
    const slice = new Slicer();
    if (now >= this.replayAfter) {
      const written = { listeners: new Set<string>(), clusters: new Set<number>() };
      try {
        await this.writeSlot(
          slice,
          1 - this.active,
          (hex) => this.listeners.get(hex),
          (id) => this.clusters.get(id)?.value,
          written,
        );
        for (const id of this.orphanCursors) {
          this.maps.roundRobin.delete(clusterIdKey.encode({ id }));
          this.orphanCursors.delete(id);
        }
      } catch (err) {
        this.logger.error({ err }, 'replaying the last change into the inactive slot failed; retried later');
        this.replayAfter = Math.min(now, Date.now()) + this.graceMs;
      }
      for (const hex of written.listeners) this.stale.listeners.delete(hex);
      for (const id of written.clusters) this.stale.clusters.delete(id);
    }
    const keep: Retired[] = [];
    for (const r of this.retired) {
      if (r.due > now) {
        keep.push(r);
        continue;
      }
      try {
        for (let index = 0; index < r.count; index++) {
          if (index % 256 === 0) await slice.next();
          this.maps.endpoints.delete(endpointKey.encode({ cluster_id: r.clusterId, generation: r.generation, index }));
        }
        this.deleteExtras(r.clusterId, r.generation, r.extras);
        this.retiredEndpoints -= r.count;
      } catch (err) {
        this.logger.error({ err }, 'deleting an old endpoint set failed; retried later');
        keep.push({ ...r, due: Math.min(now, Date.now()) + this.graceMs });
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
