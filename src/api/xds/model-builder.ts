/**
 * The xDS side of the model, kept incrementally. The client stages the resources that changed (set / remove,
 * one by one); build() re-derives only what depends on them and returns the ModelChange for the daemon. Then
 * commit() keeps it, or rollback() (the daemon refused, a resource is unusable) restores exactly the state before
 * the first staged call — every mutation is journaled, so a NACK costs as little as the change.
 *
 * Dependencies tracked per resource: EDS assignment → the clusters using it, DNS host → clusters, route
 * configuration → listeners, cluster → listeners routing to it (warming: a listener is programmed only when every
 * cluster it routes to is), and per address:port and per name the listeners claiming it (clashes: the first by
 * xDS listener name and filter-chain order wins; the others are "shadowed", logged and shown in dumps).
 */
import { emptyChange, type ModelChange } from '../../model/change.js';
import type { Cluster, Listener, MeshModel } from '../../model/types.js';
import { listenerClusterNames } from '../../model/validate.js';
import {
  type Candidate,
  candidates,
  clashKey,
  dnsHostsOf,
  edsNameOf,
  emptyState,
  modelCluster,
  modelListener,
  rdsNamesOf,
  type XdsState,
} from './convert.js';
import type { XCluster, XListener, XLoadAssignment, XRouteConfig } from './resources.js';

/** One (address, port) listener an xDS listener yields. */
interface Entry {
  /** The xDS listener's name and the position in it: the order clashes are resolved in. */
  listener: string;
  index: number;
  key: string;
  model: Listener;
}

const UNDO_SET = 0;
const UNDO_DELETE = 1;
const UNDO_ADD = 2;
const UNDO_REMOVE = 3;
const UNDO_FIELD = 4;

function before(a: Entry, b: Entry): boolean {
  return a.listener < b.listener || (a.listener === b.listener && a.index < b.index);
}

function sameListener(a: Listener, b: Listener): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export interface BuildResult {
  change: ModelChange;
  /** Listeners looked at in this build that wait for a cluster (unknown, unsupported or without endpoints). */
  warming: string[];
  notes: string[];
  /** Listeners that became shadowed in this build (another one holds their address and port, or their name). */
  shadowed: string[];
  /** The EDS or RDS names the state refers to changed: the subscriptions must follow. */
  subscriptionsChanged: boolean;
  /** Assignments and route configurations dropped because nothing refers to them any more. */
  pruned: { assignments: string[]; routes: string[] };
}

export function isEmptyChange(c: ModelChange): boolean {
  return c.upsertClusters.length + c.removeClusters.length + c.upsertListeners.length + c.removeListeners.length === 0;
}

export class XdsModelBuilder {
  /** The decoded resources (committed plus staged). */
  readonly state: XdsState = emptyState();
  private dns = new Map<string, string[]>();
  /** What the daemon holds: programmed clusters, and the entry behind each programmed listener. */
  private readonly clusters = new Map<string, Cluster>();
  private readonly listeners = new Map<string, Entry>();
  private readonly entries = new Map<string, Entry[]>();
  private readonly byEds = new Map<string, Set<string>>();
  private readonly byHost = new Map<string, Set<string>>();
  private readonly byRoute = new Map<string, Set<string>>();
  private readonly byCluster = new Map<string, Set<string>>();
  private readonly byKey = new Map<string, Set<Entry>>();
  private readonly byName = new Map<string, Set<Entry>>();
  private readonly shadowedBy = new Map<Entry, string>();

  // Staged since the last commit/rollback.
  /** Undo records, four slots each (target, key, old value, UNDO_*): flat, as a full push writes thousands. */
  private journal: unknown[] = [];
  private staging = false;
  /**
   * The transaction began on an empty builder (the first push): its rollback is a reset, so nothing is journaled —
   * the first full push is the largest change there is.
   */
  private fromEmpty = false;
  private dnsAtBegin = new Map<string, string[]>();
  private dirtyClusters = new Set<string>();
  private dirtyListeners = new Set<string>();
  private orphanEds = new Set<string>();
  private orphanRoutes = new Set<string>();
  private subsChanged = false;

  setCluster(name: string, c: XCluster | undefined): void {
    this.begin();
    const old = this.state.clusters.get(name);
    if (old === c) return;
    if (old) {
      const eds = edsNameOf(old);
      if (eds !== undefined && this.unlink(this.byEds, eds, name)) this.orphan(this.orphanEds, eds);
      for (const h of dnsHostsOf(old)) this.unlink(this.byHost, h, name);
    }
    this.put(this.state.clusters, name, c);
    if (c) {
      const eds = edsNameOf(c);
      if (eds !== undefined && this.link(this.byEds, eds, name)) this.subsChanged = true;
      for (const h of dnsHostsOf(c)) this.link(this.byHost, h, name);
    }
    this.dirtyClusters.add(name);
  }

  setAssignment(name: string, a: XLoadAssignment | undefined): void {
    this.begin();
    if (this.state.assignments.get(name) === a) return;
    this.put(this.state.assignments, name, a);
    for (const c of this.byEds.get(name) ?? []) this.dirtyClusters.add(c);
  }

  setListener(name: string, l: XListener | undefined): void {
    this.begin();
    const old = this.state.listeners.get(name);
    if (old === l) return;
    if (old) for (const r of rdsNamesOf(old)) if (this.unlink(this.byRoute, r, name)) this.orphan(this.orphanRoutes, r);
    this.put(this.state.listeners, name, l);
    if (l) for (const r of rdsNamesOf(l)) if (this.link(this.byRoute, r, name)) this.subsChanged = true;
    this.dirtyListeners.add(name);
  }

  setRoute(name: string, rc: XRouteConfig | undefined): void {
    this.begin();
    if (this.state.routes.get(name) === rc) return;
    this.put(this.state.routes, name, rc);
    for (const l of this.byRoute.get(name) ?? []) this.dirtyListeners.add(l);
  }

  /** A new DNS table; clusters whose hosts resolve differently are re-derived. */
  setDns(table: Map<string, string[]>): void {
    this.begin();
    const old = this.dns;
    if (old === table) return;
    for (const [host, users] of this.byHost) {
      if ((old.get(host) ?? []).join(',') !== (table.get(host) ?? []).join(','))
        for (const c of users) this.dirtyClusters.add(c);
    }
    this.dns = table;
    this.journal.push(this, 'dns', old, UNDO_FIELD); // one entry; restored by reset() too when fromEmpty
  }

  get dnsTable(): Map<string, string[]> {
    return this.dns;
  }

  /** Hostnames of DNS clusters (staged ones included). */
  dnsHosts(): string[] {
    return [...this.byHost.keys()];
  }

  refersToAssignment(name: string): boolean {
    return this.byEds.has(name);
  }

  refersToRoute(name: string): boolean {
    return this.byRoute.has(name);
  }

  edsNames(): string[] {
    return [...this.byEds.keys()].sort();
  }

  rdsNames(): string[] {
    return [...this.byRoute.keys()].sort();
  }

  /** Messages for the listeners currently shadowed by another, for dumps. */
  shadowed(): string[] {
    return [...this.shadowedBy.values()];
  }

  /** The whole xDS model as the daemon holds it (tests, dumps); listeners in clash-resolution order. */
  snapshot(): MeshModel {
    const listeners = [...this.listeners.values()].sort((a, b) => (before(a, b) ? -1 : 1)).map((e) => e.model);
    return { clusters: [...this.clusters.values()], listeners };
  }

  /** Re-derives what the staged resources touch. Throws XdsResourceError (→ NACK; then rollback()). */
  build(): BuildResult {
    this.begin();
    const change = emptyChange();
    const notes: string[] = [];
    const keys = new Set<string>();
    const names = new Set<string>();
    const touch = (e: Entry) => {
      keys.add(e.key);
      names.add(e.model.name);
    };

    for (const name of this.dirtyClusters) {
      const c = this.state.clusters.get(name);
      const eds = c && edsNameOf(c);
      const next = c ? modelCluster(c, eds === undefined ? undefined : this.state.assignments.get(eds), this.dns) : '';
      if (typeof next === 'string' && next) notes.push(next);
      const mc = typeof next === 'string' ? undefined : next;
      const old = this.clusters.get(name);
      if (mc) change.upsertClusters.push(mc);
      else if (old) change.removeClusters.push(name);
      if (mc || old) this.put(this.clusters, name, mc);
      // Programmed or not changed: the listeners routing to it may warm or cool.
      if (!mc !== !old)
        for (const l of this.byCluster.get(name) ?? []) for (const e of this.entries.get(l) ?? []) touch(e);
    }

    for (const name of this.dirtyListeners) {
      for (const e of this.entries.get(name) ?? []) {
        this.unindex(e);
        touch(e);
      }
      const l = this.state.listeners.get(name);
      const list: Entry[] = l
        ? candidates(l, (r) => this.state.routes.get(r), notes).map((c: Candidate, index) => ({
            listener: name,
            index,
            key: clashKey(c),
            model: modelListener(c),
          }))
        : [];
      this.put(this.entries, name, list.length > 0 ? list : undefined);
      for (const e of list) {
        this.index(e);
        touch(e);
      }
    }

    const warming: string[] = [];
    const shadowed: string[] = [];
    for (const k of keys) for (const e of this.byKey.get(k) ?? []) names.add(e.model.name);
    for (const n of names) {
      const claims = this.byName.get(n);
      const byName = claims && this.first(claims);
      const byAddr = byName && this.first(this.byKey.get(byName.key) as Set<Entry>);
      const win = byName && byAddr === byName ? byName : undefined;
      const cur = this.listeners.get(n);
      if (win) {
        if (cur !== win) this.put(this.listeners, n, win);
        if (!cur || !sameListener(cur.model, win.model)) change.upsertListeners.push(win.model);
      } else if (cur) {
        this.put(this.listeners, n, undefined);
        change.removeListeners.push(n);
      }
      for (const e of claims ?? []) {
        if (!this.ready(e)) {
          warming.push(e.model.name);
          this.put(this.shadowedBy, e, undefined);
          continue;
        }
        if (e === win) {
          this.put(this.shadowedBy, e, undefined);
          continue;
        }
        const holder = e === byName ? byAddr : byName;
        const msg = `listener ${e.model.name}: ${e.model.address}:${e.model.port} already programmed by ${holder?.model.name}; skipped`;
        notes.push(msg);
        if (this.shadowedBy.get(e) !== msg) {
          this.put(this.shadowedBy, e, msg);
          shadowed.push(msg);
        }
      }
    }

    const pruned = { assignments: [] as string[], routes: [] as string[] };
    for (const n of this.orphanEds) {
      if (this.byEds.has(n) || !this.state.assignments.has(n)) continue;
      this.put(this.state.assignments, n, undefined);
      pruned.assignments.push(n);
    }
    for (const n of this.orphanRoutes) {
      if (this.byRoute.has(n) || !this.state.routes.has(n)) continue;
      this.put(this.state.routes, n, undefined);
      pruned.routes.push(n);
    }
    const subscriptionsChanged = this.subsChanged;
    this.clearStaged();
    return { change, warming, notes, shadowed, subscriptionsChanged, pruned };
  }

  /** Keeps everything staged and built since the last commit. */
  commit(): void {
    this.end();
  }

  private end(): void {
    this.journal = [];
    this.staging = false;
    this.fromEmpty = false;
    this.clearStaged();
  }

  private begin(): void {
    if (this.staging) return;
    this.staging = true;
    const { clusters, assignments, listeners, routes } = this.state;
    this.fromEmpty = clusters.size + assignments.size + listeners.size + routes.size === 0;
    this.dnsAtBegin = this.dns;
  }

  /** Every map back to empty (the invariant: no resources, nothing derived from them). */
  private reset(): void {
    for (const m of [
      this.state.clusters,
      this.state.assignments,
      this.state.listeners,
      this.state.routes,
      this.clusters,
      this.listeners,
      this.entries,
      this.byEds,
      this.byHost,
      this.byRoute,
      this.byCluster,
      this.byKey,
      this.byName,
      this.shadowedBy,
    ] as Array<Map<unknown, unknown>>)
      m.clear();
    this.dns = this.dnsAtBegin;
  }

  /** Restores the state of the last commit. */
  rollback(): void {
    if (this.fromEmpty) this.reset();
    const j = this.journal;
    for (let i = j.length - 4; i >= 0; i -= 4) {
      const [target, key, old, op] = [j[i], j[i + 1], j[i + 2], j[i + 3]];
      if (op === UNDO_SET) (target as Map<unknown, unknown>).set(key, old);
      else if (op === UNDO_DELETE) (target as Map<unknown, unknown>).delete(key);
      else if (op === UNDO_ADD) (target as Set<unknown>).add(key);
      else if (op === UNDO_REMOVE) (target as Set<unknown>).delete(key);
      else (target as Record<string, unknown>)[key as string] = old;
    }
    this.end();
  }

  private clearStaged(): void {
    this.dirtyClusters = new Set();
    this.dirtyListeners = new Set();
    this.orphanEds = new Set();
    this.orphanRoutes = new Set();
    this.subsChanged = false;
  }

  private ready(e: Entry): boolean {
    return listenerClusterNames(e.model).every((name) => this.clusters.has(name));
  }

  /** The first ready entry of a set of claimants, in clash-resolution order. */
  private first(set: Set<Entry>): Entry | undefined {
    let best: Entry | undefined;
    for (const e of set) if (this.ready(e) && (!best || before(e, best))) best = e;
    return best;
  }

  private index(e: Entry): void {
    this.link(this.byKey, e.key, e);
    this.link(this.byName, e.model.name, e);
    for (const name of listenerClusterNames(e.model)) this.link(this.byCluster, name, e.listener);
  }

  private unindex(e: Entry): void {
    this.unlink(this.byKey, e.key, e);
    this.unlink(this.byName, e.model.name, e);
    for (const name of listenerClusterNames(e.model)) this.unlink(this.byCluster, name, e.listener);
    this.put(this.shadowedBy, e, undefined);
  }

  private orphan(set: Set<string>, name: string): void {
    set.add(name);
    this.subsChanged = true;
  }

  /** Journaled Map.set / Map.delete (value undefined). */
  private put<K, V>(map: Map<K, V>, key: K, value: V | undefined): void {
    const had = map.has(key);
    if (value === undefined && !had) return;
    if (!this.fromEmpty) this.journal.push(map, key, had ? map.get(key) : undefined, had ? UNDO_SET : UNDO_DELETE);
    if (value === undefined) map.delete(key);
    else map.set(key, value);
  }

  /** Adds a member to a set-valued index; true when the key is new. */
  private link<T>(index: Map<string, Set<T>>, key: string, member: T): boolean {
    let set = index.get(key);
    const fresh = set === undefined;
    if (!set) {
      set = new Set();
      this.put(index, key, set);
    }
    if (!set.has(member)) {
      set.add(member);
      if (!this.fromEmpty) this.journal.push(set, member, undefined, UNDO_REMOVE);
    }
    return fresh;
  }

  /** Removes a member from a set-valued index; true when the key is gone. */
  private unlink<T>(index: Map<string, Set<T>>, key: string, member: T): boolean {
    const set = index.get(key);
    if (!set?.delete(member)) return false;
    if (!this.fromEmpty) this.journal.push(set, member, undefined, UNDO_ADD);
    if (set.size > 0) return false;
    this.put(index, key, undefined);
    return true;
  }
}

export interface Conversion {
  model: MeshModel;
  /** Subscriptions the state implies: EDS names of EDS clusters, RDS names referenced by listeners. */
  edsNames: string[];
  rdsNames: string[];
  /** Hostnames of STRICT_DNS/LOGICAL_DNS endpoints the caller must resolve. */
  dnsHosts: string[];
  /** Listener names held back because a cluster has no endpoints (or is unknown / unsupported). */
  warming: string[];
  notes: string[];
}

/** A whole state at once (the incremental path from empty): the reference the conversion tests pin. */
export function convert(state: XdsState, dns: Map<string, string[]>): Conversion {
  const b = new XdsModelBuilder();
  b.setDns(dns);
  for (const [n, a] of state.assignments) b.setAssignment(n, a);
  for (const [n, r] of state.routes) b.setRoute(n, r);
  for (const [n, c] of state.clusters) b.setCluster(n, c);
  for (const [n, l] of state.listeners) b.setListener(n, l);
  const r = b.build();
  b.commit();
  return {
    model: b.snapshot(),
    edsNames: b.edsNames(),
    rdsNames: b.rdsNames(),
    dnsHosts: b.dnsHosts().sort(),
    warming: r.warming,
    notes: r.notes,
  };
}
