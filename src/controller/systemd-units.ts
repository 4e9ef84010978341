/**
 * Registered services by unit name: resolve a systemd unit to its cgroup and follow it across start/stop/restart,
 * through systemd's own D-Bus API (org.freedesktop.systemd1), so Kmesh never guesses cgroup paths.
 *
 * ControlGroup is relative to the cgroup2 mount as systemd sees it (e.g. `/system.slice/orders.service`); with the
 * hybrid hierarchy systemd mirrors the same tree under /sys/fs/cgroup/unified, so joining it with the cgroup2 mount
 * point (src/runtime/cgroup2.ts) works for both layouts. A restarted unit gets a *new* cgroup at the same path
 * (new inode, new cgroup id) — callers must re-resolve and compare ids on every onChange.
 */
import dbus from 'dbus-next';
import { callBus, callMethod, dbusErrorName, dbusErrorText, getProperty } from '../api/dbus/call.js';
import { KmeshError } from '../contracts/errors.js';
import { isUnitName, UNIT_NAME_RULE, type UnitType, unitType } from '../model/unit-name.js';
import type { UnitCgroupResolver as UnitCgroupResolverContract } from './unit-resolver.js';

const SYSTEMD = 'org.freedesktop.systemd1';
const SYSTEMD_PATH = '/org/freedesktop/systemd1';
const MANAGER = 'org.freedesktop.systemd1.Manager';
const UNIT = 'org.freedesktop.systemd1.Unit';
const PROPERTIES = 'org.freedesktop.DBus.Properties';

/** The interface that carries ControlGroup, by unit type. */
const CGROUP_INTERFACES: Record<UnitType, string> = {
  service: 'org.freedesktop.systemd1.Service',
  scope: 'org.freedesktop.systemd1.Scope',
  slice: 'org.freedesktop.systemd1.Slice',
  socket: 'org.freedesktop.systemd1.Socket',
  mount: 'org.freedesktop.systemd1.Mount',
  swap: 'org.freedesktop.systemd1.Swap',
};

/** systemd's bus_path_escape: keep [A-Za-z0-9], everything else becomes _xx (lower-case hex). */
export function unitObjectPath(unit: string): string {
  let out = '';
  for (const byte of Buffer.from(unit, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, '0')}`;
  }
  return `${SYSTEMD_PATH}/unit/${out}`;
}

export function validateUnitName(unit: string): void {
  if (!isUnitName(unit)) throw new KmeshError('InvalidArgument', `"${unit}" is ${UNIT_NAME_RULE}`);
}

const ACTIVE_STATES = new Set(['active', 'activating', 'reloading', 'deactivating', 'refreshing']);

export interface UnitCgroupResolverOptions {
  /** An existing connection (tests use a private bus); default: a new system bus connection owned by the resolver. */
  bus?: dbus.MessageBus;
  /** Coalesce bursts of systemd signals (a restart emits several): one call at once, one after this quiet time (ms). */
  debounceMs?: number;
}

interface Watch {
  unit: string;
  path: string;
  callbacks: Set<() => void>;
  timer?: NodeJS.Timeout;
}

export class UnitCgroupResolver implements UnitCgroupResolverContract {
  private readonly bus: dbus.MessageBus;
  private readonly ownsBus: boolean;
  private readonly debounceMs: number;
  private readonly watches = new Map<string, Watch>();
  private readonly matches = new Map<string, number>();
  private subscribed: Promise<void> | null = null;
  private closed = false;
  /** Set when the bus connection failed: calls would never be answered, so fail them at once. */
  private broken: Error | null = null;
  private readonly onMessage = (msg: dbus.Message) => this.handleSignal(msg);

  constructor(options: UnitCgroupResolverOptions = {}) {
    this.ownsBus = options.bus === undefined;
    this.bus = options.bus ?? dbus.systemBus();
    this.debounceMs = options.debounceMs ?? 50;
    this.bus.on('message', this.onMessage);
    // A lost bus must not crash the daemon; resolve() then fails with a clear error.
    this.bus.on('error', (err: unknown) => {
      this.broken = err instanceof Error ? err : new Error(String(err));
    });
  }

  /**
   * The unit's cgroup (relative to the cgroup2 mount), or null when the unit is known but has no processes
   * (inactive, failed, masked, exited oneshot). Throws KmeshError NotFound when systemd has no such unit file,
   * InvalidArgument for a malformed name, Failed when systemd cannot be asked.
   */
  async resolve(unit: string): Promise<string | null> {
    validateUnitName(unit);
    const path = await this.loadUnit(unit);
    const loadState = String(await this.unitProperty(path, UNIT, 'LoadState', unit));
    if (loadState === 'not-found') {
      throw new KmeshError('NotFound', `systemd has no unit "${unit}" (LoadState=not-found)`);
    }
    if (loadState !== 'loaded') return null;
    const activeState = String(await this.unitProperty(path, UNIT, 'ActiveState', unit));
    if (!ACTIVE_STATES.has(activeState)) return null;
    const cgroup = String(await this.unitProperty(path, CGROUP_INTERFACES[unitType(unit)], 'ControlGroup', unit));
    return cgroup.length > 0 ? cgroup : null;
  }

  /**
   * Call onChange (at the first signal and again when the burst settles) whenever the unit starts, stops, restarts or appears. Does not call it for the current
   * state: resolve() first, then watch. Returns an unsubscribe function.
   */
  watch(unit: string, onChange: () => void): () => void {
    validateUnitName(unit);
    let w = this.watches.get(unit);
    if (!w) {
      w = { unit, path: unitObjectPath(unit), callbacks: new Set() };
      this.watches.set(unit, w);
      this.addMatch(
        `type='signal',sender='${SYSTEMD}',path='${w.path}',interface='${PROPERTIES}',member='PropertiesChanged'`,
      );
    }
    w.callbacks.add(onChange);
    void this.subscribe();
    const watch = w;
    return () => {
      watch.callbacks.delete(onChange);
      if (watch.callbacks.size === 0 && this.watches.get(unit) === watch) {
        if (watch.timer) clearTimeout(watch.timer);
        this.watches.delete(unit);
        this.removeMatch(
          `type='signal',sender='${SYSTEMD}',path='${watch.path}',interface='${PROPERTIES}',member='PropertiesChanged'`,
        );
      }
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.watches.values()) if (w.timer) clearTimeout(w.timer);
    this.watches.clear();
    this.bus.off('message', this.onMessage);
    if (this.ownsBus) {
      this.bus.disconnect();
    } else {
      // On a shared connection, undo our match rules so the peer's traffic does not reach us any more.
      const rules = [...this.matches.keys()];
      this.matches.clear();
      await Promise.allSettled(rules.map((r) => callBus(this.bus, 'RemoveMatch', 's', [r])));
    }
  }

  private async loadUnit(unit: string): Promise<string> {
    if (this.broken) {
      throw new KmeshError(
        'Failed',
        `cannot ask systemd about "${unit}": system bus unavailable (${this.broken.message})`,
      );
    }
    try {
      // LoadUnit (unlike GetUnit) also answers for units that are not loaded yet, with LoadState telling the rest.
      const [path] = await callMethod(this.bus, {
        destination: SYSTEMD,
        path: SYSTEMD_PATH,
        iface: MANAGER,
        member: 'LoadUnit',
        signature: 's',
        body: [unit],
      });
      return String(path);
    } catch (err) {
      throw this.translate(err, unit);
    }
  }

  private async unitProperty(path: string, iface: string, name: string, unit: string): Promise<unknown> {
    try {
      return await getProperty(this.bus, SYSTEMD, path, iface, name);
    } catch (err) {
      throw this.translate(err, unit);
    }
  }

  private translate(err: unknown, unit: string): KmeshError {
    const name = dbusErrorName(err);
    if (name === 'org.freedesktop.systemd1.NoSuchUnit') {
      return new KmeshError('NotFound', `systemd has no unit "${unit}"`);
    }
    if (name === 'org.freedesktop.DBus.Error.InvalidArgs') {
      return new KmeshError('InvalidArgument', `systemd rejected unit name "${unit}": ${dbusErrorText(err)}`);
    }
    return new KmeshError('Failed', `cannot ask systemd about "${unit}": ${dbusErrorText(err)}`);
  }

  /** Manager.Subscribe makes systemd emit JobRemoved/UnitNew to us; once per connection. */
  private subscribe(): Promise<void> {
    if (!this.subscribed) {
      this.addMatch(`type='signal',sender='${SYSTEMD}',interface='${MANAGER}',member='JobRemoved'`);
      this.addMatch(`type='signal',sender='${SYSTEMD}',interface='${MANAGER}',member='UnitNew'`);
      this.subscribed = callMethod(this.bus, {
        destination: SYSTEMD,
        path: SYSTEMD_PATH,
        iface: MANAGER,
        member: 'Subscribe',
      }).then(
        () => {},
        () => {
          // Already subscribed (error AlreadySubscribed) or systemd away: PropertiesChanged still arrives.
        },
      );
    }
    return this.subscribed;
  }

  private addMatch(rule: string): void {
    const n = this.matches.get(rule) ?? 0;
    this.matches.set(rule, n + 1);
    if (n === 0) callBus(this.bus, 'AddMatch', 's', [rule]).catch(() => {});
  }

  private removeMatch(rule: string): void {
    const n = this.matches.get(rule) ?? 0;
    if (n <= 1) {
      this.matches.delete(rule);
      if (n === 1) callBus(this.bus, 'RemoveMatch', 's', [rule]).catch(() => {});
    } else {
      this.matches.set(rule, n - 1);
    }
  }

  private handleSignal(msg: dbus.Message): void {
    if (msg.type !== dbus.MessageType.SIGNAL) return;
    let unit: string | undefined;
    if (msg.interface === MANAGER && msg.member === 'JobRemoved') {
      unit = String(msg.body[2]); // (u id, o job, s unit, s result)
    } else if (msg.interface === MANAGER && msg.member === 'UnitNew') {
      unit = String(msg.body[0]); // (s id, o unit)
    } else if (msg.interface === PROPERTIES && msg.member === 'PropertiesChanged') {
      for (const w of this.watches.values()) {
        if (w.path === msg.path) {
          unit = w.unit;
          break;
        }
      }
    }
    const w = unit === undefined ? undefined : this.watches.get(unit);
    if (!w) return;
    // Leading edge: a restarted unit's new cgroup should be attached as soon as possible (its first connect()
    // races with us). Trailing edge: once the burst of signals settles, report the final state once more.
    if (!w.timer) this.fire(w);
    else clearTimeout(w.timer);
    w.timer = setTimeout(() => {
      w.timer = undefined;
      this.fire(w);
    }, this.debounceMs);
  }

  private fire(w: Watch): void {
    for (const cb of [...w.callbacks]) {
      try {
        cb();
      } catch {
        // A throwing subscriber must not stop the others.
      }
    }
  }
}
