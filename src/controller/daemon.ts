/**
 * kmesh-controller: keeps the data path's maps equal to TOML + xDS, keeps registered
 * cgroups attached, and answers the management surfaces through DaemonControl. It is
 * handed a loaded data path (src/datapath/, composed in src/bin/compose.ts) and
 * publishes what it applied through a read-only AppliedConfig.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type {
  DaemonControl,
  DaemonEvents,
  DaemonState,
  DaemonStatus,
  EndpointStatus,
  FeatureStatus,
  ServiceStatus,
} from '../contracts/control.js';
import { KmeshError } from '../contracts/errors.js';
import { VERSION } from '../contracts/package.js';
import type { L7Datapath } from '../l7/datapath.js';
import { isL7Listener } from '../l7/encode.js';
import { type L7Settings, startL7 } from '../l7/wire.js';
import type { ModelChange } from '../model/change.js';
import { routesText } from '../model/route-text.js';
import type { MeshModel, ServiceSpec } from '../model/types.js';
import type { BpfProgram } from '../runtime/bpf-object.js';
import { CgroupLinks } from '../runtime/cgroup-links.js';
import { type Cgroup2View, cgroup2View } from '../runtime/cgroup2.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import { nextTurn } from '../runtime/slicer.js';
import { type AppliedConfig, appliedView } from './applied.js';
import { assignClusterIds } from './cluster-ids.js';
import { loadConfigFile } from './config/load.js';
import type { KmeshConfig } from './config/schema.js';
import { L4_SOCKOPS_PROGRAM, L4Sockops } from './l4-sockops.js';
import { dumpMaps } from './map-dump.js';
import { MemoryReturn } from './memory-return.js';
import { MeshState, replaceAll } from './mesh-state.js';
import { bpfObjectDir, pinPaths } from './paths.js';
import { type ApplyResult, Reconciler } from './reconciler.js';
import { type ClusterCounters, Resilience } from './resilience.js';
import { ServiceRegistry } from './services.js';
import type { UnitStartHooks } from './unit-hooks.js';
import type { UnitCgroupResolver } from './unit-resolver.js';

/** What the daemon needs of the loaded data path. */
export interface DaemonDatapath {
  /** The maps the reconciler writes. */
  maps(family: 'l4'): DatapathMaps;
  /** Every loaded program: attached to each registered cgroup. */
  programs(): BpfProgram[];
  /** Programs and families on/off with the reason, for status. */
  status(): Record<string, FeatureStatus>;
  /** Pins again the maps whose pins disappeared; their names. */
  restoreMapPins(): string[];
}

/** The xDS client, as status shows it (the client owns its connection state). */
export interface XdsConnection {
  readonly connected: boolean;
}

export interface DaemonOptions {
  logger: Logger;
  datapath: DaemonDatapath;
  /** The bpffs directory: links are pinned under it (maps were pinned by the data path). */
  pinDir: string;
  unitResolver?: UnitCgroupResolver | null;
  /** L7 routing (http listeners with virtual hosts); false: off. */
  l7?: L7Settings | false;
  /** Drop-ins that make systemd ask for the attach before a registered unit's main process starts. */
  unitHooks?: UnitStartHooks | null;
}

/** Resources a change names from which its merge gets turns of the event loop of its own. */
const LARGE_CHANGE = 100;

const changeSize = (c: ModelChange) =>
  c.upsertClusters.length + c.removeClusters.length + c.upsertListeners.length + c.removeListeners.length;

export class Daemon extends EventEmitter<DaemonEvents> implements DaemonControl {
  private state: DaemonState = 'starting';
  private configVersion = 0;
  /** What the last apply wrote, deleted and left alone (diff evidence for tests and logs). */
  lastApply: ApplyResult | undefined;
  /** TOML + xDS by name, as the maps hold it. */
  private readonly mesh = new MeshState();
  /** malloc's freed pages back to the kernel after applies (docs/memory.md). */
  private readonly memoryReturn = new MemoryReturn();
  private xds: { connection: XdsConnection; address: string } | undefined;
  private lastError: string | undefined;
  private readonly startedAt = new Date().toISOString();
  private reconciler: Reconciler | undefined;
  private resilience: Resilience | undefined;
  private registry: ServiceRegistry | undefined;
  /** Whether the L4 sockops program is attached (only a config with a cluster policy needs it). */
  private sockops: L4Sockops | undefined;
  private cgroupView: Cgroup2View | undefined;
  private l7Datapath: L7Datapath | undefined;
  /** The L7 object is loaded when the first listener with routes arrives (its verification costs a second or more). */
  private l7Starting: Promise<L7Datapath | undefined> | undefined;
  private l7Programs: BpfProgram[] = [];
  /** What the maps hold, for the probe's names and the dumps (read-only; applies are synchronous). */
  readonly applied: AppliedConfig = appliedView(this.mesh, () => this.configVersion);

  constructor(
    private config: KmeshConfig,
    private readonly options: DaemonOptions,
  ) {
    super();
  }

  get logger(): Logger {
    return this.options.logger;
  }

  get maps(): DatapathMaps {
    return this.options.datapath.maps('l4');
  }

  /** Read when first needed: a daemon that is never started needs no cgroup v2. */
  private get cgroups(): Cgroup2View {
    this.cgroupView ??= cgroup2View();
    return this.cgroupView;
  }

  /** The L7 data path, when it runs. */
  get l7(): L7Datapath | undefined {
    return this.l7Datapath;
  }

  get currentConfig(): KmeshConfig {
    return this.config;
  }

  /** Adopts what the maps hold, applies the TOML, attaches the registered services. */
  async start(): Promise<void> {
    this.reconciler = new Reconciler(this.maps, this.logger);
    this.reconciler.adopt();
    this.resilience = new Resilience(this.maps, this.logger, this.mesh);
    this.resilience.adopt();
    this.resilience.watch(1000);
    const links = new CgroupLinks(pinPaths(this.options.pinDir).links, this.cgroups);
    const sockops = new L4Sockops(this.maps.l4Mode);
    sockops.adopt(links.attachedIds().some((id) => links.programsOf(id).includes(L4_SOCKOPS_PROGRAM)));
    this.sockops = sockops;
    await this.applyChange('toml', replaceAll(this.mesh.source('toml'), this.config.model), true);

    const { datapath } = this.options;
    this.registry = new ServiceRegistry(
      links,
      () => sockops.select([...datapath.programs(), ...this.l7Programs]),
      this.cgroups,
      this.options.unitResolver ?? null,
      this.logger,
      this.options.unitHooks ?? null,
    );
    this.registry.on('changed', (name, change) => this.emit('service-changed', name, change));
    await this.registerConfigured(this.config.services);
    // the registry attached what the first apply needed: connect4 may use the hash now
    sockops.publish();
    this.registry.pruneStale();
    this.registry.startWatching(this.config.daemon.rescanIntervalMs, () => this.restorePins());
    this.setState('running');
  }

  /** Maps whose pins were removed under the daemon (rm, a stray cleanup) are pinned again. */
  private restorePins(): void {
    try {
      const maps = this.options.datapath.restoreMapPins();
      if (maps.length > 0) this.logger.warn({ maps }, 'pinned maps disappeared: pinned again');
    } catch (err) {
      this.logger.error({ err: (err as Error).message }, 'pinning maps again failed');
    }
  }

  private readonly dumpSections = new Map<string, () => unknown>();

  /** A plugin's part of dumpConfig (e.g. the xDS client's shadowed listeners), read at dump time. */
  addDumpSection(name: string, section: () => unknown): void {
    this.dumpSections.set(name, section);
  }

  /** Called by the xDS client with its complete model; throws (→ NACK) and changes nothing when it is not acceptable. */
  async applyXds(model: MeshModel): Promise<void> {
    await this.applyChange('xds', () => replaceAll(this.mesh.source('xds'), model));
  }

  /**
   * The xDS client's change, resource by resource; throws (→ NACK) and changes nothing when not acceptable.
   * Costs what the change touches: resources the source hands over unchanged (the same object) are skipped.
   */
  async applyXdsChange(change: ModelChange): Promise<void> {
    await this.applyChange('xds', change);
  }

  /** Status shows this xDS client's connection from now on. */
  observeXds(connection: XdsConnection, address: string): void {
    this.xds = { connection, address };
  }

  /** Applies run one after the other (each stages against what the one before committed). */
  private applying: Promise<unknown> = Promise.resolve();

  /**
   * One source's change → merged, validated, encoded and reconciled for the names it touches. `whole`: the maps
   * may hold anything (a previous daemon's config): what the state does not have is removed from them too.
   * A change given as a function is read when its turn comes (it depends on what is applied before it).
   */
  private applyChange(source: 'toml' | 'xds', change: ModelChange | (() => ModelChange), whole = false): Promise<void> {
    const done = this.applying.then(() =>
      this.applyNow(source, typeof change === 'function' ? change() : change, whole),
    );
    this.applying = done.catch(() => {});
    return done;
  }

  private async applyNow(source: 'toml' | 'xds', change: ModelChange, whole: boolean): Promise<void> {
    if (!this.reconciler) throw new Error('daemon not started');
    const started = process.hrtime.bigint();
    // A large change's merge (tens of ms for a full push) starts a turn of the event loop of its own, in slices.
    if (changeSize(change) >= LARGE_CHANGE) await nextTurn();
    const staged = await this.mesh.stage(source, change);
    for (const note of staged.shadowed) this.logger.warn(note);
    if (whole) {
      const keep = this.mesh.desiredKeys();
      for (const [id, c] of staged.delta.clusters) if (c) keep.clusters.add(id);
      for (const [hex, l] of staged.delta.listeners) if (l) keep.listeners.add(hex);
      const live = this.reconciler.liveKeys();
      for (const id of live.clusters) if (!keep.clusters.has(id)) staged.delta.clusters.set(id, null);
      for (const hex of live.listeners) if (!keep.listeners.has(hex)) staged.delta.listeners.set(hex, null);
    }
    if (this.sockops?.switchOn(staged.delta)) this.attachSockops();
    const result = await this.reconciler.apply(staged.delta);
    staged.commit();
    this.resilience?.sync(staged.delta);
    this.applyL7(change);
    this.lastApply = result;
    this.memoryReturn.applied();
    this.configVersion++;
    this.logger.info(
      { configVersion: this.configVersion, ...result, ms: Number(process.hrtime.bigint() - started) / 1e6 },
      'config applied',
    );
    this.emit('config-applied', this.configVersion);
  }

  /**
   * Make-before-break for the first cluster with a policy: the L4 sockops program is attached to every registered
   * cgroup, then connect4 is told so. Before start() has its registry, start() does both once it has attached.
   */
  private attachSockops(): void {
    if (!this.registry) return;
    this.registry.resyncAll();
    this.sockops?.publish();
    this.logger.info('L4 sockops attached: the config has a cluster with a resilience policy');
  }

  /** The L7 route tables follow the committed model (stage validated its routes against the L7 limits). */
  private applyL7(change: ModelChange): void {
    const l7 = this.l7Datapath;
    const wanted = change.upsertListeners.some(isL7Listener);
    if (!l7) {
      if (wanted && this.options.l7 !== false) void this.startL7();
      return;
    }
    if (!(l7.active || wanted)) return;
    try {
      l7.write(l7.plan(this.mesh.model(), this.clusterIds(), assignClusterIds));
    } catch (err) {
      this.lastError = (err as Error).message;
      this.logger.error({ err: (err as Error).message }, 'L7 route tables not written; the previous ones stay');
    }
  }

  /** Resolves once the L7 data path runs (undefined: off, or no listener has routes yet). */
  l7Ready(): Promise<L7Datapath | undefined> {
    return this.l7Starting ?? Promise.resolve(this.l7Datapath);
  }

  /** Loads the L7 data path (once), attaches its sockops to the registered cgroups and writes the routes. */
  private startL7(): Promise<L7Datapath | undefined> {
    this.l7Starting ??= startL7(
      this.options.l7 || {},
      { pinMapsDir: pinPaths(this.options.pinDir).maps, bpfObjectDir: bpfObjectDir() },
      this.logger,
    ).then((l7) => {
      if (!l7 || this.state === 'stopping') {
        void l7?.stop();
        return undefined;
      }
      this.l7Datapath = l7;
      this.l7Programs = [l7.sockopsProgram()];
      this.registry?.resyncAll();
      this.applyL7({
        upsertClusters: [],
        removeClusters: [],
        upsertListeners: this.mesh.model().listeners,
        removeListeners: [],
      });
      return l7;
    });
    return this.l7Starting;
  }

  private clusterIds(): Map<string, number> {
    return new Map([...this.mesh.desiredKeys().clusters].map((id) => [this.mesh.clusterName(id) ?? '', id]));
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
      xdsConnected: this.xds?.connection.connected ?? false,
      ...(this.xds ? { xdsAddress: this.xds.address } : {}),
      services: this.registry?.list().length ?? 0,
      ...counts,
      features: this.options.datapath.status(),
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

  /** Each endpoint's state in the kernel (ejection, active connections). */
  endpointStatus(cluster: string): EndpointStatus[] {
    const list = this.resilience?.endpoints(cluster);
    if (!list) throw new KmeshError('NotFound', `no cluster "${cluster}" is live`);
    return list;
  }

  /** Per-cluster resilience counters (overflows, ejections, active connections). */
  clusterCounters(): ClusterCounters[] {
    return this.resilience?.clusters() ?? [];
  }

  async dumpConfig(): Promise<unknown> {
    return {
      configVersion: this.configVersion,
      model: this.mesh.model(),
      httpRoutes: routesText(this.mesh.model()),
      services: this.listServices(),
      maps: dumpMaps(this.maps, (id) => this.mesh.clusterName(id)),
      ...Object.fromEntries([...this.dumpSections].map(([name, section]) => [name, section()])),
    };
  }

  /** Re-read the TOML; a bad file leaves everything live as it was. */
  async reload(): Promise<number> {
    this.setState('reloading');
    try {
      const next = loadConfigFile(this.config.path, { cgroups: this.cgroups });
      // The file is read whole; the maps are still only written where it changed.
      await this.applyChange('toml', () => replaceAll(this.mesh.source('toml'), next.model));
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

  /** Stop managing; pinned programs and maps keep steering traffic (the data path's owner closes it). */
  async stop(): Promise<void> {
    this.setState('stopping');
    await this.registry?.close();
    await this.applying;
    this.resilience?.stop();
    await this.l7Starting;
    await this.l7Datapath?.stop();
    await this.reconciler?.flush();
    this.memoryReturn.stop();
  }

  private setState(state: DaemonState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state-changed', state);
  }
}
