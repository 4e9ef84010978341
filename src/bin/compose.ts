/**
 * The daemon's parts wired together, each depending only on the small interface it
 * needs: the data path (every BPF object of the manifest), the controller, the
 * Prometheus registry and server (independent of the probe: a kernel without what the
 * probe needs keeps /metrics), the probe, the xDS client and the D-Bus service.
 * Started in dependency order, stopped in reverse. What an idle daemon does not need is
 * imported only when used (docs/memory.md): dbus-next with a system bus, the gRPC stack
 * and the xDS protos with an [xds] section.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { DbusServiceOptions } from '../api/dbus/service.js';
import type { FeatureStatus } from '../contracts/control.js';
import type { KmeshConfig } from '../controller/config/schema.js';
import { Daemon } from '../controller/daemon.js';
import { bpfObjectDir, pinPaths } from '../controller/paths.js';
import type { UnitCgroupResolver } from '../controller/unit-resolver.js';
import { Datapath } from '../datapath/datapath.js';
import { l4MapStats, registerDaemonMetrics } from '../probe/daemon-metrics.js';
import { type MetricsServer, startMetricsServer } from '../probe/server.js';
import { type ProbeHandle, startProbe } from '../probe/wire.js';
import { ensureBpffs } from '../runtime/bpffs.js';

export interface PartsOptions {
  config: KmeshConfig;
  logger: Logger;
  /** bpffs directory for maps and links ([daemon] pin_dir or --pin-dir). */
  pinDir: string;
  /** Default: bpfObjectDir(). */
  objectDir?: string;
  /** Detected kernel features (default: detected once, now). */
  features?: Record<string, FeatureStatus>;
  unitResolver?: UnitCgroupResolver | null;
  /** Serve the D-Bus management API (needs a bus); a taken name rejects, other trouble is logged. */
  dbus?: DbusServiceOptions | false;
}

export interface Parts {
  datapath: Datapath;
  daemon: Daemon;
  registry: Registry;
  metrics: MetricsServer | undefined;
  probe: ProbeHandle | undefined;
  /** Stops every part in reverse order; pinned programs and maps keep steering traffic. */
  stop(): Promise<void>;
}

const statsEnabled = (): boolean => {
  try {
    return readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() === '1';
  } catch {
    return false;
  }
};

/** The probe is optional: if it cannot start, the daemon and /metrics run on without it. */
function startOptionalProbe(start: () => ProbeHandle, logger: Logger): ProbeHandle | undefined {
  try {
    return start();
  } catch (err) {
    logger.error({ err: (err as Error).message }, 'feature off: kmesh-probe could not start');
    return undefined;
  }
}

/** Starts every part; on failure stops what was started and rejects. */
export async function startParts(o: PartsOptions): Promise<Parts> {
  const { config, logger } = o;
  const stops: Array<{ name: string; stop: () => Promise<void> | void }> = [];
  const stop = async (): Promise<void> => {
    for (const part of stops.splice(0).reverse()) {
      try {
        await part.stop();
      } catch (err) {
        logger.error({ err, part: part.name }, 'stopping');
      }
    }
  };
  try {
    ensureBpffs(o.pinDir);
    const pins = pinPaths(o.pinDir);
    mkdirSync(pins.maps, { recursive: true });
    const datapath = Datapath.open({
      objectDir: o.objectDir ?? bpfObjectDir(),
      pinMapsDir: pins.maps,
      logger,
      ...(o.features ? { features: o.features } : {}),
    });
    stops.push({ name: 'datapath', stop: () => datapath.close() });

    const daemon = new Daemon(config, { logger, datapath, pinDir: o.pinDir, unitResolver: o.unitResolver ?? null });
    stops.push({ name: 'daemon', stop: () => daemon.stop() });
    await daemon.start();

    const registry = new Registry();
    const xdsPlugin = config.xds ? await import('../api/xds/plugin.js') : undefined;
    const xds = xdsPlugin && config.xds ? xdsPlugin.attachXds(daemon, config.xds, logger) : undefined;
    if (xds && config.xds) {
      daemon.observeXds(xds, config.xds.address);
      stops.push({ name: 'xds', stop: () => xds.stop() });
    }
    // the probe first: its collectors refresh the key count that the map metrics report
    let probe: ProbeHandle | undefined;
    if (datapath.enabled('probe')) {
      probe = startOptionalProbe(
        () =>
          startProbe({
            maps: datapath.maps('probe'),
            registry,
            logger,
            lookups: {
              workloadOfCgroup: (id) => daemon.workloadOfCgroup(id),
              listenerOf: (address, port) => daemon.applied.listenerOf(address, port),
              clusterNameOf: (id) => daemon.applied.clusterNameOf(id),
            },
            daemon,
            accessLog: config.daemon.accessLog,
          }),
        logger,
      );
      const running = probe;
      if (running) stops.push({ name: 'probe', stop: () => running.stop() });
    }
    registerDaemonMetrics(registry, {
      control: daemon,
      maps: () => [...l4MapStats(daemon.maps, daemon.status()), ...(probe?.mapStats() ?? [])],
      programs: () => datapath.programs(),
      bpfStatsEnabled: statsEnabled,
      ...(xdsPlugin && xds ? { xds: xdsPlugin.countXdsResponses(xds) } : {}),
    });
    const metrics = config.metrics ? await startMetricsServer(config.metrics.listen, registry, logger) : undefined;
    if (metrics) stops.push({ name: 'metrics', stop: () => metrics.close() });

    if (o.dbus) {
      try {
        const { startDbusService } = await import('../api/dbus/service.js');
        const service = await startDbusService(daemon, logger, o.dbus);
        stops.push({ name: 'dbus', stop: () => service.stop() });
      } catch (err) {
        // A taken name means another instance; any other D-Bus trouble leaves the data path working.
        if ((err as { code?: string }).code === 'AlreadyExists') throw err;
        logger.error({ err: (err as Error).message }, 'D-Bus management API unavailable');
      }
    }
    return { datapath, daemon, registry, metrics, probe, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
