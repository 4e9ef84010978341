#!/usr/bin/env node
/** kmesh-daemon: the host service. `--help` for usage. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { cleanupPins } from '../controller/cleanup.js';
import { loadConfigFile } from '../controller/config/load.js';
import { DEFAULT_CONFIG_PATH, DEFAULT_PIN_DIR, type KmeshConfig } from '../controller/config/schema.js';
import { Daemon, VERSION } from '../controller/daemon.js';
import { KmeshError } from '../controller/errors.js';
import { acquireInstanceLock, lockHolder } from '../controller/instance-lock.js';
import { bpfObjectDir, pinPaths } from '../controller/paths.js';
import { notifyReady, notifyReloading, notifyStatus, notifyStopping, startWatchdog } from '../controller/sd-notify.js';
import { SYSTEMD_RUNTIME_UNITS, UnitStartHooks } from '../controller/unit-hooks.js';
import { PROBE_OBJECT } from '../probe/probe.js';
import { startProbe } from '../probe/wire.js';
import { cgroup2View } from '../runtime/cgroup2.js';
import { planPrograms } from '../runtime/features.js';

const USAGE = `Usage: kmesh-daemon [options]

  --config FILE     configuration (default ${DEFAULT_CONFIG_PATH})
  --check           validate the configuration and exit; touches nothing in the kernel
  --cleanup         detach every program and unpin every map Kmesh pinned in the pin directory, then exit;
                    refused while a daemon runs on it, or when the config cannot be read and no --pin-dir is given
  --pin-dir DIR     bpffs directory for maps and links (default: [daemon] pin_dir, ${DEFAULT_PIN_DIR})
  --version         print the version
  --help            this text

Signals: SIGHUP reloads the configuration; SIGTERM/SIGINT stop the daemon and leave
the pinned programs steering traffic (use --cleanup to remove them).`;

function fail(message: string, code = 1): never {
  process.stderr.write(`kmesh-daemon: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let args: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  const OPTIONS = {
    config: { type: 'string' },
    check: { type: 'boolean' },
    cleanup: { type: 'boolean' },
    'pin-dir': { type: 'string' },
    version: { type: 'boolean' },
    help: { type: 'boolean' },
  } as const;
  try {
    args = parseArgs({ options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (err) {
    fail(`${(err as Error).message}\n\n${USAGE}`, 2);
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (args.version) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  const configPath = args.config ?? DEFAULT_CONFIG_PATH;

  if (args.cleanup) {
    cleanup(configPath, args['pin-dir']);
    return;
  }

  let config: ReturnType<typeof loadConfigFile>;
  try {
    // The daemon's cgroup view: a [[services]] cgroup it would refuse fails --check and start-up alike.
    config = loadConfigFile(configPath, { cgroups: cgroup2View() });
  } catch (err) {
    fail((err as Error).message);
  }
  if (args.check) {
    const m = config.model;
    const endpoints = m.clusters.reduce((n, c) => n + c.endpoints.length, 0);
    process.stdout.write(
      `${configPath}: OK (${config.services.length} services, ${m.listeners.length} listeners, ${m.clusters.length} clusters, ${endpoints} endpoints)\n`,
    );
    return;
  }

  await runDaemon(config, args['pin-dir']);
}

/**
 * --cleanup removes only what Kmesh pinned, only where the configuration (or --pin-dir) says, and only
 * while no daemon manages it: a guessed directory or a live daemon's pins are never removed.
 */
function cleanup(configPath: string, pinDirOption: string | undefined): void {
  let pinDir = pinDirOption;
  if (!pinDir) {
    try {
      pinDir = loadConfigFile(configPath).daemon.pinDir;
    } catch (err) {
      fail(
        `--cleanup: ${(err as Error).message}\nnothing removed: the pin directory is not known; fix the file or name it with --pin-dir DIR (the default is ${DEFAULT_PIN_DIR})`,
      );
    }
  }
  let release: () => void;
  try {
    release = acquireInstanceLock(pinDir);
  } catch (err) {
    if (!(err instanceof KmeshError) || err.code !== 'AlreadyExists') fail((err as Error).message);
    const pid = lockHolder(pinDir);
    fail(
      `--cleanup: a kmesh-daemon (pid ${pid}) is running on ${pinDir}; nothing removed. Stop it first (systemctl stop kmesh, or kill ${pid}), then run --cleanup again`,
    );
  }
  try {
    const { removed, foreign } = cleanupPins(pinDir);
    process.stdout.write(removed > 0 ? `removed ${removed} pins under ${pinDir}\n` : `nothing pinned at ${pinDir}\n`);
    if (foreign.length > 0) {
      process.stdout.write(`left what Kmesh did not pin there: ${foreign.join(', ')}\n`);
    }
  } catch (err) {
    fail((err as Error).message);
  } finally {
    release();
  }
}

/** The system bus is there (systemd hosts): unit names can be resolved and D-Bus served. */
function systemBusAvailable(): boolean {
  return Boolean(process.env.DBUS_SYSTEM_BUS_ADDRESS) || existsSync('/run/dbus/system_bus_socket');
}

/**
 * What an idle daemon does not need is loaded only when used (docs/memory.md has the measurements): dbus-next when
 * there is a system bus, the gRPC stack and the xDS protos when there is an [xds] section.
 */
const lazy = {
  unitResolver: async () => new (await import('../controller/systemd-units.js')).UnitCgroupResolver(),
  dbus: async () => (await import('../api/dbus/service.js')).startDbusService,
  xds: async () => import('../api/xds/plugin.js'),
};

async function runDaemon(config: KmeshConfig, pinDirOverride: string | undefined): Promise<void> {
  // Synchronous: a log line written just before exit must not be lost.
  const logger = pino(
    { level: config.daemon.logLevel, base: { pid: process.pid } },
    pino.destination({ dest: 1, sync: true }),
  );
  const unitResolver = systemBusAvailable() ? await lazy.unitResolver() : null;
  const unitHooks = unitResolver
    ? new UnitStartHooks(SYSTEMD_RUNTIME_UNITS, () => unitResolver.reloadSystemd(), logger)
    : null;
  const daemon = new Daemon(config, {
    logger,
    unitResolver,
    unitHooks,
    ...(pinDirOverride ? { pinDir: pinDirOverride } : {}),
  });
  let releaseLock: () => void = () => {};
  const exitStartupFailed = async (err: unknown): Promise<never> => {
    logger.fatal({ err: (err as Error).message }, 'start-up failed');
    await daemon.stop().catch(() => {});
    await unitResolver?.close();
    releaseLock();
    process.exit(1);
  };

  try {
    releaseLock = acquireInstanceLock(daemon.pinDir);
    await daemon.start();
  } catch (err) {
    await exitStartupFailed(err);
  }
  if (unitResolver) {
    try {
      const dbusService = await (await lazy.dbus())(daemon, logger);
      daemon.addPlugin({ name: 'dbus', stop: () => dbusService.stop() });
    } catch (err) {
      // A taken name means another instance; any other D-Bus trouble leaves the data path working.
      if ((err as { code?: string }).code === 'AlreadyExists') await exitStartupFailed(err);
      logger.error({ err: (err as Error).message }, 'D-Bus management API unavailable');
    }
  } else {
    logger.warn('no system bus: the D-Bus management API and unit-name registration are off');
  }
  const xds = config.xds ? await lazy.xds() : undefined;
  const xdsClient = xds && config.xds ? xds.attachXds(daemon, config.xds, logger) : undefined;
  const probePlan = planPrograms(join(bpfObjectDir(), PROBE_OBJECT), daemon.kernelFeatures);
  if (probePlan.disabled.size > 0) {
    logger.warn({ why: [...probePlan.disabled.values()] }, 'feature off: kmesh-probe (connection metrics)');
  } else {
    try {
      await startProbe(daemon, {
        pinMapsDir: pinPaths(daemon.pinDir).maps,
        bpfObjectDir: bpfObjectDir(),
        accessLog: config.daemon.accessLog,
        ...(config.metrics ? { metricsListen: config.metrics.listen } : {}),
        programs: () => daemon.l4Programs(),
        ...(xds && xdsClient ? { xdsStats: xds.countXdsResponses(xdsClient) } : {}),
      });
    } catch (err) {
      await exitStartupFailed(err);
    }
  }

  const summary = (s = daemon.status()) =>
    `${s.state}: config v${s.configVersion}, ${s.services} services, ${s.listeners} listeners, ${s.clusters} clusters`;
  const stopWatchdog = startWatchdog();
  notifyReady(summary());
  daemon.on('config-applied', () => notifyStatus(summary()));
  daemon.on('service-changed', () => notifyStatus(summary()));
  const status = daemon.status();
  logger.info(
    { pinDir: daemon.pinDir, listeners: status.listeners, clusters: status.clusters, services: status.services },
    'kmesh-daemon ready',
  );

  process.on('SIGHUP', () => {
    notifyReloading();
    daemon
      .reload()
      .then(() => notifyReady(summary()))
      .catch((err) => notifyReady(`${summary()}; last reload failed: ${(err as Error).message}`));
  });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping; pinned programs keep steering traffic');
    notifyStopping();
    stopWatchdog();
    daemon
      .stop()
      .catch((err) => logger.error({ err }, 'stop'))
      .finally(async () => {
        await unitResolver?.close();
        releaseLock();
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

await main();
