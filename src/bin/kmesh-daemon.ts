#!/usr/bin/env node
/** kmesh-daemon: the host service. `--help` for usage. */
import { parseArgs } from 'node:util';
import pino from 'pino';
import { cleanupPins } from '../controller/cleanup.js';
import { loadConfigFile } from '../controller/config/load.js';
import { DEFAULT_CONFIG_PATH, DEFAULT_PIN_DIR } from '../controller/config/schema.js';
import { Daemon, VERSION } from '../controller/daemon.js';
import { acquireInstanceLock } from '../controller/instance-lock.js';

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
    const { removed } = cleanupPins(pinDir);
    process.stdout.write(removed ? `removed everything under ${pinDir}\n` : `nothing pinned at ${pinDir}\n`);
    return;
  }

  let config: ReturnType<typeof loadConfigFile>;
  try {
    config = loadConfigFile(configPath);
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

  // Synchronous: a log line written just before exit must not be lost.
  const logger = pino(
    { level: config.daemon.logLevel, base: { pid: process.pid } },
    pino.destination({ dest: 1, sync: true }),
  );
  const daemon = new Daemon(config, { logger, ...(args['pin-dir'] ? { pinDir: args['pin-dir'] } : {}) });
  let releaseLock: () => void = () => {};
  try {
    releaseLock = acquireInstanceLock(daemon.pinDir);
    await daemon.start();
  } catch (err) {
    logger.fatal({ err: (err as Error).message }, 'start-up failed');
    releaseLock();
    process.exit(1);
  }
  const status = daemon.status();
  logger.info(
    { pinDir: daemon.pinDir, listeners: status.listeners, clusters: status.clusters, services: status.services },
    'kmesh-daemon ready',
  );

  process.on('SIGHUP', () => {
    daemon.reload().catch(() => {
      /* reported by reload(); the live config stays */
    });
  });
  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping; pinned programs keep steering traffic');
    daemon
      .stop()
      .catch((err) => logger.error({ err }, 'stop'))
      .finally(() => {
        releaseLock();
        process.exit(0);
      });
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

await main();
