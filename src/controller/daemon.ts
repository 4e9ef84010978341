/**
 * kmesh-controller: keeps the data path's maps equal to TOML + xDS, keeps registered
 * cgroups attached, and answers the management surfaces through DaemonControl. It is
 * handed a loaded data path (src/datapath/, composed in src/bin/kmesh-daemon.ts) and
 * publishes what it applied as an immutable AppliedConfig.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type {
  DaemonControl,
  DaemonEvents,
  DaemonState,
  DaemonStatus,
  FeatureStatus,
  ServiceStatus,
} from '../contracts/control.js';
import { KmeshError } from '../contracts/errors.js';
import { VERSION } from '../contracts/package.js';
import type { ModelChange } from '../model/change.js';
import { mergeModels } from '../model/merge.js';
import { emptyModel, type MeshModel, type ServiceSpec } from '../model/types.js';
import { validateModel } from '../model/validate.js';
import type { BpfProgram } from '../runtime/bpf-object.js';
import { CgroupLinks } from '../runtime/cgroup-links.js';
import { findCgroup2Mount } from '../runtime/cgroup2.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import { AppliedConfig } from './applied.js';
import { loadConfigFile } from './config/load.js';
import type { KmeshConfig } from './config/schema.js';
import { desiredState } from './desired-state.js';
import { dumpMaps } from './map-dump.js';
import { pinPaths } from './paths.js';
import { type ApplyResult, Reconciler } from './reconciler.js';
import { ServiceRegistry } from './services.js';
import type { UnitCgroupResolver } from './unit-resolver.js';

/** What the daemon needs of the loaded data path. */
export interface DaemonDatapath {
  /** The maps the reconciler writes. */
  maps(family: 'l4'): DatapathMaps;
  /** Every loaded program: attached to each registered cgroup. */
  programs(): BpfProgram[];
  /** Programs and families on/off with the reason, for status. */
  status(): Record<string, FeatureStatus>;
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
}

export class Daemon extends EventEmitter<DaemonEvents> implements DaemonControl {
  private state: DaemonState = 'starting';
  /** What the last apply wrote, deleted and left alone (diff evidence for tests and logs). */
  lastApply: ApplyResult | undefined;
  private xdsModel: MeshModel = emptyModel();
  private appliedConfig = AppliedConfig.NONE;
  private xds: { connection: XdsConnection; address: string } | undefined;
  private lastError: string | undefined;
  private readonly startedAt = new Date().toISOString();
  private reconciler: Reconciler | undefined;
  private registry: ServiceRegistry | undefined;
  private accessLogListeners: Array<(enabled: boolean) => void> = [];

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

  /** What the maps hold now; replaced whole by every apply. */
  get applied(): AppliedConfig {
    return this.appliedConfig;
  }

  get currentConfig(): KmeshConfig {
    return this.config;
  }

  /** Adopts what the maps hold, applies the TOML, attaches the registered services. */
  async start(): Promise<void> {
    this.reconciler = new Reconciler(this.maps, this.logger);
    this.reconciler.adopt();
    this.applyModels(this.config.model, this.xdsModel);

    const mount = findCgroup2Mount();
    const links = new CgroupLinks(pinPaths(this.options.pinDir).links, mount);
    const { datapath } = this.options;
    this.registry = new ServiceRegistry(
      links,
      () => datapath.programs(),
      mount,
      this.options.unitResolver ?? null,
      this.logger,
    );
    this.registry.on('changed', (name, change) => this.emit('service-changed', name, change));
    await this.registerConfigured(this.config.services);
    this.registry.pruneStale();
    this.registry.startWatching(this.config.daemon.rescanIntervalMs);
    this.setState('running');
  }

  /** Called by the xDS client with its complete model; throws (→ NACK) and changes nothing when it is not acceptable. */
  async applyXds(model: MeshModel): Promise<void> {
    this.applyModels(this.config.model, model);
    this.xdsModel = model;
  }

  /** The xDS client's change, resource by resource; throws (→ NACK) and changes nothing when not acceptable. */
  async applyXdsChange(change: ModelChange): Promise<void> {
    const clusters = new Map(this.xdsModel.clusters.map((c) => [c.name, c]));
    const listeners = new Map(this.xdsModel.listeners.map((l) => [l.name, l]));
    for (const name of change.removeClusters) clusters.delete(name);
    for (const name of change.removeListeners) listeners.delete(name);
    for (const c of change.upsertClusters) clusters.set(c.name, c);
    for (const l of change.upsertListeners) listeners.set(l.name, l);
    await this.applyXds({ clusters: [...clusters.values()], listeners: [...listeners.values()] });
  }

  /** Status shows this xDS client's connection from now on. */
  observeXds(connection: XdsConnection, address: string): void {
    this.xds = { connection, address };
  }

  private applyModels(toml: MeshModel, xds: MeshModel): void {
    if (!this.reconciler) throw new Error('daemon not started');
    const { model, shadowed } = mergeModels(toml, xds);
    for (const note of shadowed) this.logger.warn(note);
    const errors = validateModel(model);
    if (errors.length > 0) throw new KmeshError('InvalidConfig', errors.join('\n'));
    const desired = desiredState(model);
    const started = process.hrtime.bigint();
    const result = this.reconciler.apply(desired);
    this.lastApply = result;
    this.appliedConfig = new AppliedConfig(this.appliedConfig.version + 1, model, desired.clusterIds);
    const configVersion = this.appliedConfig.version;
    this.logger.info(
      { configVersion, ...result, ms: Number(process.hrtime.bigint() - started) / 1e6 },
      'config applied',
    );
    this.emit('config-applied', configVersion);
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
      configVersion: this.appliedConfig.version,
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

  async unregisterService(name: string): Promise<void> {
    if (!this.registry) throw new KmeshError('Failed', 'daemon not started');
    await this.registry.unregister(name);
  }

  async dumpConfig(): Promise<unknown> {
    const applied = this.appliedConfig;
    return {
      configVersion: applied.version,
      model: applied.model,
      services: this.listServices(),
      maps: dumpMaps(this.maps, applied.clusterNamesById()),
    };
  }

  /** Re-read the TOML; a bad file leaves everything live as it was. */
  async reload(): Promise<number> {
    this.setState('reloading');
    try {
      const next = loadConfigFile(this.config.path);
      this.applyModels(next.model, this.xdsModel);
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
      return this.appliedConfig.version;
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
    this.reconciler?.flush();
  }

  private setState(state: DaemonState): void {
    if (this.state === state) return;
    this.state = state;
    this.emit('state-changed', state);
  }
}
