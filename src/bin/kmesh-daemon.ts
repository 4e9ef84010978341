#!/usr/bin/env node
/** kmesh-daemon: the host service. `--help` for usage. */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { VERSION } from '../contracts/package.js';
import { cleanupPins } from '../controller/cleanup.js';
import { loadConfigFile } from '../controller/config/load.js';
import { DEFAULT_CONFIG_PATH, DEFAULT_PIN_DIR, type KmeshConfig } from '../controller/config/schema.js';
import { acquireInstanceLock } from '../controller/instance-lock.js';
import { notifyReady, notifyReloading, notifyStatus, notifyStopping, startWatchdog } from '../controller/sd-notify.js';
import { cgroup2View } from '../runtime/cgroup2.js';
import { type Parts, startParts } from './compose.js';

const USAGE = `Usage: kmesh-daemon [options]

  --config FILE     configuration (default ${DEFAULT_CONFIG_PATH})
  --check           validate the configuration and exit; touches nothing in the kernel
  --cleanup         detach every program and unpin every map this daemon owns, then exit
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
    let pinDir = args['pin-dir'];
    if (!pinDir) {
      try {
        pinDir = loadConfigFile(configPath).daemon.pinDir;
      } catch {
        pinDir = DEFAULT_PIN_DIR;
      }
    }
    let removed: boolean;
    try {
      ({ removed } = cleanupPins(pinDir));
    } catch (err) {
      fail((err as Error).message);
    }
    process.stdout.write(removed ? `removed everything under ${pinDir}\n` : `nothing pinned at ${pinDir}\n`);
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

/** The system bus is there (systemd hosts): unit names can be resolved and D-Bus served. */
function systemBusAvailable(): boolean {
  return Boolean(process.env.DBUS_SYSTEM_BUS_ADDRESS) || existsSync('/run/dbus/system_bus_socket');
}

/** dbus-next is imported only with a system bus (docs/memory.md); the rest of the lazy parts load in compose.ts. */
const lazy = {
  unitResolver: async () => new (await import('../controller/systemd-units.js')).UnitCgroupResolver(),
};

async function runDaemon(config: KmeshConfig, pinDirOverride: string | undefined): Promise<void> {
  // Synchronous: a log line written just before exit must not be lost.
  const logger = pino(
    { level: config.daemon.logLevel, base: { pid: process.pid } },
    pino.destination({ dest: 1, sync: true }),
  );
  const busAvailable = systemBusAvailable();
  const unitResolver = busAvailable ? await lazy.unitResolver() : null;
  if (!busAvailable) logger.warn('no system bus: the D-Bus management API and unit-name registration are off');
  const pinDir = pinDirOverride ?? config.daemon.pinDir;
  let releaseLock: () => void = () => {};
  let parts: Parts;
  try {
    releaseLock = acquireInstanceLock(pinDir);
    parts = await startParts({ config, logger, pinDir, unitResolver, dbus: busAvailable ? {} : false });
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'start-up failed');
    await unitResolver?.close();
    releaseLock();
    process.exit(1);
  }
  const { daemon } = parts;

  const summary = (s = daemon.status()) =>
    `${s.state}: config v${s.configVersion}, ${s.services} services, ${s.listeners} listeners, ${s.clusters} clusters`;
  const stopWatchdog = startWatchdog();
  notifyReady(summary());
  daemon.on('config-applied', () => notifyStatus(summary()));
  daemon.on('service-changed', () => notifyStatus(summary()));
  const status = daemon.status();
  logger.info(
    { pinDir, listeners: status.listeners, clusters: status.clusters, services: status.services },
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
    parts
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
