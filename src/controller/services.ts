/**
 * Registered services and their cgroups. A registration stays when its cgroup goes
 * away (unit stopped, directory removed) and is re-attached when it comes back with a
 * new cgroup id; only the cgroups registered here ever get programs attached.
 */
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ServiceStatus } from '../contracts/control.js';
import { KmeshError } from '../contracts/errors.js';
import type { ServiceSpec } from '../model/types.js';
import type { BpfProgram } from '../runtime/bpf-object.js';
import type { CgroupLinks } from '../runtime/cgroup-links.js';
import { type Cgroup2View, cgroupId, guardCgroupPath } from '../runtime/cgroup2.js';
import type { UnitCgroupResolver } from './unit-resolver.js';

interface Registration {
  name: string;
  spec: ServiceSpec;
  origin: 'config' | 'runtime';
  /** Where the cgroup is (or is expected) now. */
  wantedPath?: string;
  /** Why the unit's cgroup could not be asked for (unknown unit, no systemd). */
  resolveError?: string;
  attachedPath?: string;
  attachedId?: bigint;
  detail?: string;
  unwatch?: () => void;
}

export const serviceName = (spec: ServiceSpec): string => spec.unit ?? spec.cgroup ?? '';

export class ServiceRegistry extends EventEmitter<{
  changed: [name: string, change: 'registered' | 'unregistered' | 'attached' | 'detached'];
}> {
  private readonly entries = new Map<string, Registration>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly links: CgroupLinks,
    private readonly programs: () => BpfProgram[],
    private readonly cgroups: Cgroup2View,
    private readonly units: UnitCgroupResolver | null,
    private readonly logger: Logger,
  ) {
    super();
  }

  async register(spec: ServiceSpec, origin: 'config' | 'runtime'): Promise<ServiceStatus> {
    const name = serviceName(spec);
    if (!name) throw new KmeshError('InvalidArgument', 'a service needs a unit name or a cgroup path');
    if (this.entries.has(name)) throw new KmeshError('AlreadyExists', `service ${name} is already registered`);
    const entry: Registration = { name, spec, origin };
    if (spec.unit !== undefined) {
      // A configured unit stays registered whatever systemd says now: it attaches once the unit runs.
      if (!this.units) {
        const why = `cannot resolve unit ${spec.unit}: systemd is not reachable on the system bus`;
        if (origin === 'runtime') throw new KmeshError('InvalidArgument', why);
        entry.resolveError = why;
      } else {
        const unit = spec.unit;
        try {
          const path = await this.units.resolve(unit);
          entry.wantedPath = path === null ? undefined : this.guard(path);
        } catch (err) {
          if (origin === 'runtime') throw err;
          entry.resolveError = (err as Error).message;
        }
        entry.unwatch = this.units.watch(unit, () => void this.refreshUnit(entry));
      }
    } else {
      entry.wantedPath = this.guard(spec.cgroup as string);
    }
    this.entries.set(name, entry);
    this.emit('changed', name, 'registered');
    this.sync(entry);
    return this.status(entry);
  }

  async unregister(name: string): Promise<void> {
    const entry = this.entries.get(name);
    if (!entry) throw new KmeshError('NotFound', `service ${name} is not registered`);
    entry.unwatch?.();
    this.detach(entry, 'unregistered');
    this.entries.delete(name);
    this.emit('changed', name, 'unregistered');
  }

  /** Make the config-origin registrations exactly `specs`; runtime ones are left alone. */
  async setConfigured(specs: ServiceSpec[]): Promise<void> {
    const wanted = new Map(specs.map((s) => [serviceName(s), s]));
    for (const entry of [...this.entries.values()]) {
      if (entry.origin === 'config' && !wanted.has(entry.name)) await this.unregister(entry.name);
    }
    // One bad entry must not keep the others from being registered.
    const problems: string[] = [];
    for (const [name, spec] of wanted) {
      if (this.entries.has(name)) continue;
      try {
        await this.register(spec, 'config');
      } catch (err) {
        problems.push(`${name}: ${(err as Error).message}`);
      }
    }
    if (problems.length > 0) throw new KmeshError('InvalidArgument', problems.join('; '));
  }

  list(): ServiceStatus[] {
    return [...this.entries.values()].map((e) => this.status(e));
  }

  /** Drop pinned links of cgroups nobody registers any more (left by an earlier run). */
  pruneStale(): void {
    const live = new Set([...this.entries.values()].map((e) => e.attachedId).filter((id) => id !== undefined));
    for (const id of this.links.attachedIds()) {
      if (!live.has(id)) {
        this.links.detach(id);
        this.logger.info({ cgroupId: String(id) }, 'removed links of a cgroup no longer registered');
      }
    }
  }

  /** Re-point every attachment at the current programs (after a restart loaded new ones). */
  resyncAll(): void {
    for (const entry of this.entries.values()) {
      entry.attachedId = undefined;
      this.sync(entry);
    }
  }

  startWatching(intervalMs: number): void {
    this.timer = setInterval(() => {
      for (const entry of this.entries.values()) this.sync(entry);
    }, intervalMs);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    for (const entry of this.entries.values()) entry.unwatch?.();
  }

  private async refreshUnit(entry: Registration): Promise<void> {
    if (!this.units || entry.spec.unit === undefined || this.entries.get(entry.name) !== entry) return;
    try {
      const path = await this.units.resolve(entry.spec.unit);
      entry.wantedPath = path === null ? undefined : this.guard(path);
      entry.resolveError = undefined;
    } catch (err) {
      entry.wantedPath = undefined;
      entry.resolveError = (err as Error).message;
    }
    this.sync(entry);
  }

  /** A unit's or a configured cgroup, refused when it is the root or not a cgroup below the mount. */
  private guard(path: string): string {
    try {
      return guardCgroupPath(path, this.cgroups);
    } catch (err) {
      throw new KmeshError('InvalidArgument', (err as Error).message);
    }
  }

  /** Attach when the wanted cgroup exists with a new id; detach when it is gone. */
  private sync(entry: Registration): void {
    const path = entry.wantedPath;
    if (!path || !existsSync(path)) {
      if (entry.attachedId !== undefined) this.detach(entry, 'cgroup gone');
      entry.detail = path ? `cgroup ${path} does not exist (yet)` : (entry.resolveError ?? 'unit is not running');
      return;
    }
    let id: bigint;
    try {
      id = cgroupId(path);
    } catch {
      return; // removed between the checks; the next pass sees it
    }
    if (id === entry.attachedId) return;
    if (entry.attachedId !== undefined) this.detach(entry, 'cgroup re-created');
    try {
      entry.attachedId = this.links.attach(path, this.programs());
      entry.attachedPath = path;
      entry.detail = undefined;
      this.logger.info({ service: entry.name, cgroup: path, cgroupId: String(entry.attachedId) }, 'attached');
      this.emit('changed', entry.name, 'attached');
    } catch (err) {
      entry.detail = `attach failed: ${(err as Error).message}`;
      this.logger.error({ service: entry.name, cgroup: path, err }, 'attach failed');
    }
  }

  private detach(entry: Registration, why: string): void {
    if (entry.attachedId === undefined) return;
    this.links.detach(entry.attachedId);
    this.logger.info({ service: entry.name, cgroupId: String(entry.attachedId), why }, 'detached');
    entry.attachedId = undefined;
    entry.attachedPath = undefined;
    this.emit('changed', entry.name, 'detached');
  }

  /** cgroup id → service name, for the probe's source_workload label. */
  nameOfCgroup(id: bigint): string | undefined {
    for (const entry of this.entries.values()) if (entry.attachedId === id) return entry.name;
    return undefined;
  }

  private status(entry: Registration): ServiceStatus {
    return {
      name: entry.name,
      ...(entry.spec.unit !== undefined ? { unit: entry.spec.unit } : {}),
      ...(entry.attachedPath !== undefined ? { cgroupPath: entry.attachedPath } : {}),
      ...(entry.attachedId !== undefined ? { cgroupId: String(entry.attachedId) } : {}),
      attached: entry.attachedId !== undefined,
      origin: entry.origin,
      ...(entry.detail !== undefined ? { detail: entry.detail } : {}),
    };
  }
}
