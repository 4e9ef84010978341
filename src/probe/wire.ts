/**
 * How the probe joins the daemon: one call after Daemon.start(). Written against the
 * small surface below (which src/controller/daemon.ts provides) so the probe does not
 * depend on the controller's internals.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { DaemonEvents, DaemonStatus } from '../controller/control.js';
import { BpfObject, type BpfProgram, warnStalePins } from '../runtime/bpf-object.js';
import type { DatapathMaps } from '../runtime/maps/datapath-maps.js';
import { CONFIG_SLOTS } from '../runtime/maps/layouts.js';
import { type MapStats, registerDaemonMetrics, type XdsStats } from './daemon-metrics.js';
import { PROBE_OBJECT, PROBE_PROGRAM, Probe, probeMapsOf } from './probe.js';
import { type MetricsServer, startMetricsServer } from './server.js';

/** What the daemon (src/controller/daemon.ts, class Daemon) already offers the probe. */
export interface ProbeDaemon {
  readonly logger: Logger;
  readonly maps: DatapathMaps;
  status(): DaemonStatus;
  on<E extends keyof DaemonEvents>(event: E, listener: (...args: DaemonEvents[E]) => void): unknown;
  addPrograms(programs: BpfProgram[]): void;
  /** Keeps the object's maps pinned (pins removed under the daemon are restored). */
  keepPinned(obj: BpfObject): void;
  addPlugin(plugin: { name: string; stop(): Promise<void> | void }): void;
  onAccessLogChange(listener: (enabled: boolean) => void): void;
  workloadOfCgroup(id: bigint): string | undefined;
  listenerOf(address: string, port: number): string | undefined;
  clusterNameOf(id: number): string | undefined;
}

export interface ProbeSettings {
  /** Where the L4 object pins its maps (pinPaths(pinDir).maps): kmesh_sock_origin is shared through it. */
  pinMapsDir: string;
  /** Directory of the compiled objects (bpfObjectDir()). */
  bpfObjectDir: string;
  /** [daemon] access_log */
  accessLog: boolean;
  /** Destination for access lines (default: the daemon logger), e.g. a separate file. */
  accessLogger?: Logger;
  /** [metrics] listen; no HTTP server when absent. */
  metricsListen?: string;
  /** The L4 programs, for run counts (optional). */
  programs?: () => Array<{ name: string; fd: number }>;
  /** From the xDS client, when there is one. */
  xdsStats?: () => XdsStats;
}

export interface ProbeHandle {
  probe: Probe;
  registry: Registry;
  server: MetricsServer | undefined;
  stop(): Promise<void>;
}

const statsEnabled = (): boolean => {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
};

/**
 * Loads kmesh_probe.bpf.o, starts the consumer, has the daemon attach the probe's
 * program to every registered cgroup, and serves /metrics. Rejects (and leaves nothing
 * running) when the object does not load or the metrics address cannot be bound.
 */
export async function startProbe(host: ProbeDaemon, settings: ProbeSettings): Promise<ProbeHandle> {
  const path = join(settings.bpfObjectDir, PROBE_OBJECT);
  if (!existsSync(path)) throw new Error(`probe object ${path} not found (build with make -C bpf)`);
  const obj = BpfObject.open(path, {
    pinMapsDir: settings.pinMapsDir,
    onStalePin: warnStalePins(host.logger),
  });
  let probe: Probe | undefined;
  try {
    obj.load();
    const registry = new Registry();
    const maps = probeMapsOf(obj);
    probe = new Probe({
      maps,
      lookups: host,
      registry,
      logger: host.logger,
      accessLog: settings.accessLog,
      ...(settings.accessLogger ? { accessLogger: settings.accessLogger } : {}),
    });
    const running = probe;
    registerDaemonMetrics(registry, {
      control: host,
      maps: () => [
        ...dataPathMapStats(host),
        { name: maps.conns.name, entries: running.metrics.keys, capacity: maps.conns.maxEntries },
      ],
      programs: () => [...(settings.programs?.() ?? []), ...obj.allPrograms().map((p) => ({ name: p.name, fd: p.fd }))],
      bpfStatsEnabled: statsEnabled,
      ...(settings.xdsStats ? { xds: settings.xdsStats } : {}),
    });
    const server = settings.metricsListen
      ? await startMetricsServer(settings.metricsListen, registry, host.logger)
      : undefined;
    running.start();
    host.onAccessLogChange((on) => running.setAccessLog(on));
    // A new attachment has a zeroed cgroup slot: name it at once (the 1 s timer is the fallback).
    host.on('service-changed', (_name, change) => {
      if (change === 'attached') running.syncCgroups();
    });
    host.addPrograms([obj.program(PROBE_PROGRAM)]);
    host.keepPinned(obj);
    running.syncCgroups();
    const stop = async (): Promise<void> => {
      await server?.close();
      running.stop();
      obj.close();
    };
    host.addPlugin({ name: 'probe', stop });
    return { probe: running, registry, server, stop };
  } catch (err) {
    probe?.stop();
    obj.close();
    throw err;
  }
}

/** Capacities from the maps; entries where the daemon knows them without walking a map. */
function dataPathMapStats(host: ProbeDaemon): MapStats[] {
  const m = host.maps;
  const s = host.status();
  return [
    // one config's share: the maps hold the live config and the one being switched to
    { name: m.listeners.name, entries: s.listeners, capacity: m.listeners.maxEntries / CONFIG_SLOTS },
    { name: m.clusters.name, entries: s.clusters, capacity: m.clusters.maxEntries / CONFIG_SLOTS },
    // live endpoints; during a swap the old generation briefly occupies entries too
    { name: m.endpoints.name, entries: s.endpoints, capacity: m.endpoints.maxEntries },
    { name: m.roundRobin.name, capacity: m.roundRobin.maxEntries },
  ];
}
