/**
 * kmesh-controller: owns the lifecycle. Load (or adopt) the programs and maps, keep
 * the maps equal to TOML + xDS, keep registered cgroups attached, and answer the
 * management surfaces through DaemonControl.
 */
import { EventEmitter } from 'node:events';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ModelChange } from '../model/change.js';
import { routesText } from '../model/route-text.js';
import type { MeshModel, ServiceSpec } from '../model/types.js';
import { boundKey } from '../model/validate.js';
import { BpfObject, type BpfProgram, warnStalePins } from '../runtime/bpf-object.js';
import { ensureBpffs } from '../runtime/bpffs.js';
import { CgroupLinks } from '../runtime/cgroup-links.js';
import { type Cgroup2View, cgroup2View } from '../runtime/cgroup2.js';
import { planPrograms, probeFeatures } from '../runtime/features.js';
import { encodeAddr, isV4Mapped } from '../runtime/maps/addr.js';
import { type DatapathMaps, datapathMaps } from '../runtime/maps/datapath-maps.js';
import { loadConfigFile } from './config/load.js';
import type { KmeshConfig } from './config/schema.js';
import type {
  DaemonControl,
  DaemonEvents,
  DaemonState,
  DaemonStatus,
  FeatureStatus,
  ServiceStatus,
} from './control.js';
import { KmeshError } from './errors.js';
import { dumpMaps } from './map-dump.js';
import { MeshState, replaceAll } from './mesh-state.js';
import { bpfObjectDir, packageRoot, pinPaths } from './paths.js';
import { type ApplyResult, Reconciler } from './reconciler.js';
import { ServiceRegistry } from './services.js';
import type { UnitStartHooks } from './unit-hooks.js';
import type { UnitCgroupResolver } from './unit-resolver.js';

const L4_OBJECT = 'kmesh_l4.bpf.o';

export const VERSION: string = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version;

export interface DaemonOptions {
  logger: Logger;
  /** Overrides [daemon] pin_dir. */
  pinDir?: string;
  unitResolver?: UnitCgroupResolver | null;
  /** Drop-ins that make systemd ask for the attach before a registered unit's main process starts. */
  unitHooks?: UnitStartHooks | null;
}

/** A part that runs beside the data path (xDS client, probe, D-Bus): started after the maps are live. */
export interface DaemonPlugin {
  name: string;
  stop(): Promise<void> | void;
}

export class Daemon extends EventEmitter<DaemonEvents> implements DaemonControl {
  private state: DaemonState = 'starting';
  private configVersion = 0;
  /** What the last apply wrote, deleted and left alone (diff evidence for tests and logs). */
  lastApply: ApplyResult | undefined;
  /** TOML + xDS by name, as the maps hold it. */
  private readonly mesh = new MeshState();
  private xdsConnected = false;
  private xdsAddress: string | undefined;
  private lastError: string | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly features: Record<string, FeatureStatus> = {};
  private readonly plugins: DaemonPlugin[] = [];
  private l4: BpfObject | undefined;
  private extraPrograms: BpfProgram[] = [];
  private readonly pinnedObjects: BpfObject[] = [];
  private reconciler: Reconciler | undefined;
  private registry: ServiceRegistry | undefined;
  private cgroupView: Cgroup2View | undefined;
  readonly pinDir: string;
  /** Probed once: the L4 and probe objects are planned against the same answers. */
  readonly kernelFeatures = probeFeatures();

  constructor(
    private config: KmeshConfig,
    private readonly options: DaemonOptions,
  ) {
    super();
    this.pinDir = options.pinDir ?? config.daemon.pinDir;
  }

  get logger(): Logger {
    return this.options.logger;
  }

  get maps(): DatapathMaps {
    if (!this.l4) throw new Error('daemon not started');
    return datapathMaps(this.l4);
  }

  /** Read when first needed: a daemon that is never started needs no cgroup v2. */
  private get cgroups(): Cgroup2View {
    this.cgroupView ??= cgroup2View();
    return this.cgroupView;
  }

  get currentConfig(): KmeshConfig {
    return this.config;
  }

  async start(): Promise<void> {
    ensureBpffs(this.pinDir);
    const pins = pinPaths(this.pinDir);
    const objectPath = join(bpfObjectDir(), L4_OBJECT);
    const plan = planPrograms(objectPath, this.kernelFeatures);
    if (plan.fatal.length > 0) {
      throw new KmeshError('KernelUnsupported', `this kernel cannot run the Kmesh data path: ${plan.fatal.join('; ')}`);
    }
    for (const [program, reason] of plan.disabled) {
      this.features[program] = { enabled: false, reason };
      this.logger.warn({ program, reason }, 'feature off: the kernel lacks what this program needs');
    }
    mkdirSync(pins.maps, { recursive: true });
    this.l4 = BpfObject.open(objectPath, {
      pinMapsDir: pins.maps,
      skipPrograms: new Set(plan.disabled.keys()),
      onStalePin: warnStalePins(this.logger),
    });
    this.l4.load();
    for (const prog of this.l4.allPrograms()) this.features[prog.name] = { enabled: true };

    this.reconciler = new Reconciler(datapathMaps(this.l4), this.logger);
    this.reconciler.adopt();
    this.applyChange('toml', replaceAll(this.mesh.source('toml'), this.config.model), true);

    const links = new CgroupLinks(pins.links, this.cgroups);
    this.registry = new ServiceRegistry(
      links,
      () => this.programs(),
      this.cgroups,
      this.options.unitResolver ?? null,
      this.logger,
      this.options.unitHooks ?? null,
    );
    this.registry.on('changed', (name, change) => this.emit('service-changed', name, change));
    await this.registerConfigured(this.config.services);
    this.registry.pruneStale();
    this.registry.startWatching(this.config.daemon.rescanIntervalMs, () => this.restorePins());
    this.setState('running');
  }

  /** Attach programs of another object (the probe) to every registered cgroup too. */
  addPrograms(programs: BpfProgram[]): void {
    this.extraPrograms.push(...programs);
    this.registry?.resyncAll();
  }

  /** Another object whose pinned maps are kept pinned (the probe's). */
  keepPinned(obj: BpfObject): void {
    this.pinnedObjects.push(obj);
  }

  private restorePins(): void {
    for (const obj of [this.l4, ...this.pinnedObjects]) {
      try {
        const maps = obj?.restoreMapPins() ?? [];
        if (maps.length > 0) this.logger.warn({ maps }, 'pinned maps disappeared: pinned again');
      } catch (err) {
        this.logger.error({ err: (err as Error).message }, 'pinning maps again failed');
      }
    }
  }

  addPlugin(plugin: DaemonPlugin): void {
    this.plugins.push(plugin);
  }

  private readonly dumpSections = new Map<string, () => unknown>();

  /** A plugin's part of dumpConfig (e.g. the xDS client's shadowed listeners), read at dump time. */
  addDumpSection(name: string, section: () => unknown): void {
    this.dumpSections.set(name, section);
  }

  /** Called by the xDS client with its complete model; throws (→ NACK) and changes nothing when it is not acceptable. */
  async applyXds(model: MeshModel): Promise<void> {
    this.applyChange('xds', replaceAll(this.mesh.source('xds'), model));
  }

  /**
   * The xDS client's change, resource by resource; throws (→ NACK) and changes nothing when not acceptable.
   * Costs what the change touches: resources the source hands over unchanged (the same object) are skipped.
   */
  async applyXdsChange(change: ModelChange): Promise<void> {
    this.applyChange('xds', change);
  }

  setXdsConnected(connected: boolean, address?: string): void {
    this.xdsConnected = connected;
    if (address !== undefined) this.xdsAddress = address;
  }

  private programs(): BpfProgram[] {
    return [...this.l4Programs(), ...this.extraPrograms];
  }

  /** The data-path programs (for run-count metrics). */
  l4Programs(): BpfProgram[] {
    return this.l4?.allPrograms() ?? [];
  }

  /**
   * One source's change → merged, validated, encoded and reconciled for the names it touches. `whole`: the maps
   * may hold anything (a previous daemon's config): what the state does not have is removed from them too.
   */
  private applyChange(source: 'toml' | 'xds', change: ModelChange, whole = false): void {
    if (!this.reconciler) throw new Error('daemon not started');
    const started = process.hrtime.bigint();
    const staged = this.mesh.stage(source, change);
    for (const note of staged.shadowed) this.logger.warn(note);
    if (whole) {
      const keep = this.mesh.desiredKeys();
      for (const [id, c] of staged.delta.clusters) if (c) keep.clusters.add(id);
      for (const [hex, l] of staged.delta.listeners) if (l) keep.listeners.add(hex);
      const live = this.reconciler.liveKeys();
      for (const id of live.clusters) if (!keep.clusters.has(id)) staged.delta.clusters.set(id, null);
      for (const hex of live.listeners) if (!keep.listeners.has(hex)) staged.delta.listeners.set(hex, null);
    }
    const result = this.reconciler.apply(staged.delta);
    staged.commit();
    this.lastApply = result;
    this.configVersion++;
    this.logger.info(
      { configVersion: this.configVersion, ...result, ms: Number(process.hrtime.bigint() - started) / 1e6 },
      'config applied',
    );
    this.emit('config-applied', this.configVersion);
  }

  private async registerConfigured(specs: ServiceSpec[]): Promise<void> {
    if (!this.registry) return;
    try {
      await this.registry.setConfigured(specs);
    } catch (err) {
      this.lastError = (err as Error).message;
      this.logger.error({ err }, 'registering configured services');
    }
  }

  status(): DaemonStatus {
    const counts = this.reconciler?.counts() ?? { listeners: 0, clusters: 0, endpoints: 0 };
    return {
      version: VERSION,
      state: this.state,
      configVersion: this.configVersion,
      configPath: this.config.path,
      xdsConnected: this.xdsConnected,
      ...(this.xdsAddress !== undefined ? { xdsAddress: this.xdsAddress } : {}),
      services: this.registry?.list().length ?? 0,
      ...counts,
      features: { ...this.features },
      startedAt: this.startedAt,
      ...(this.lastError !== undefined ? { lastError: this.lastError } : {}),
    };
  }

  listServices(): ServiceStatus[] {
    return this.registry?.list() ?? [];
  }

  /** source_workload for the probe. */
  workloadOfCgroup(id: bigint): string | undefined {
    return this.registry?.nameOfCgroup(id);
  }

  clusterNameOf(id: number): string | undefined {
    return this.mesh.clusterName(id);
  }

  /** The listener a dialled address matched, the wildcard of its family included (as the kernel does). */
  listenerOf(address: string, port: number): string | undefined {
    const wildcard = isV4Mapped(encodeAddr(address)) ? '0.0.0.0' : '::';
    const at = (addr: string) => this.mesh.listenerAt(boundKey({ address: addr, port, protocol: 'tcp' }));
    return at(address) ?? at(wildcard);
  }

  async registerService(spec: ServiceSpec): Promise<ServiceStatus> {
    if (!this.registry) throw new KmeshError('Failed', 'daemon not started');
    return this.registry.register(spec, 'runtime');
  }

  async attachUnit(unit: string): Promise<ServiceStatus> {
    if (!this.registry) throw new KmeshError('Failed', 'daemon not started');
    return this.registry.attachUnit(unit);
  }

  async unregisterService(name: string): Promise<void> {
    if (!this.registry) throw new KmeshError('Failed', 'daemon not started');
    await this.registry.unregister(name);
  }

  async dumpConfig(): Promise<unknown> {
    return {
      configVersion: this.configVersion,
      model: this.mesh.model(),
      httpRoutes: routesText(this.mesh.model()),
      services: this.listServices(),
      maps: this.l4 ? dumpMaps(this.maps, (id) => this.mesh.clusterName(id)) : null,
      ...Object.fromEntries([...this.dumpSections].map(([name, section]) => [name, section()])),
    };
  }

  /** Re-read the TOML; a bad file leaves everything live as it was. */
  async reload(): Promise<number> {
    this.setState('reloading');
    try {
      const next = loadConfigFile(this.config.path, { cgroups: this.cgroups });
      // The file is read whole; the maps are still only written where it changed.
      this.applyChange('toml', replaceAll(this.mesh.source('toml'), next.model));
      for (const section of ['xds', 'metrics'] as const) {
        if (JSON.stringify(next[section]) !== JSON.stringify(this.config[section])) {
          this.logger.warn({ section }, `[${section}] changed: it takes effect when kmesh restarts`);
        }
      }
      if (next.daemon.pinDir !== this.config.daemon.pinDir) {
        this.logger.warn('[daemon] pin_dir changed: it takes effect when kmesh restarts');
      }
      this.config = next;
      this.setLogLevel(next.daemon.logLevel);
      this.setAccessLog(next.daemon.accessLog);
      await this.registerConfigured(next.services);
      this.lastError = undefined;
      return this.configVersion;
    } catch (err) {
      this.lastError = (err as Error).message;
      this.logger.error({ err: (err as Error).message }, 'reload rejected; the live config is unchanged');
      throw err;
    } finally {
      this.setState('running');
    }
  }

  setLogLevel(level: string): void {
    if (!(level in this.logger.levels.values) && level !== 'silent') {
      throw new KmeshError(
        'InvalidArgument',
        `unknown log level "${level}" (fatal, error, warn, info, debug, trace, silent)`,
      );
    }
    this.logger.level = level;
  }

  private accessLogListeners: Array<(enabled: boolean) => void> = [];

  onAccessLogChange(listener: (enabled: boolean) => void): void {
    this.accessLogListeners.push(listener);
  }

  setAccessLog(enabled: boolean): void {
    for (const listener of this.accessLogListeners) listener(enabled);
  }

  /** Stop managing; pinned programs and maps keep steering traffic. */
  async stop(): Promise<void> {
    this.setState('stopping');
    for (const plugin of this.plugins.reverse()) {
      try {
        await plugin.stop();
      } catch (err) {
        this.logger.error({ err, plugin: plugin.name }, 'stopping plugin');
      }
    }
    await this.registry?.close();
    this.reconciler?.flush();
    this.l4?.close();
  }

  private setState(state: DaemonState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state-changed', state);
  }
}
