/** A real daemon (all its parts, as kmesh-daemon composes them) in the test process, on its own pin directory, always cleaned up. */
import pino, { type Logger } from 'pino';
import { type Parts, startParts } from '../../../src/bin/compose.js';
import { cleanupPins } from '../../../src/controller/cleanup.js';
import { parseConfig } from '../../../src/controller/config/load.js';
import type { Daemon } from '../../../src/controller/daemon.js';

let counter = 0;

export function testPinDir(label: string): string {
  return `/sys/fs/bpf/kmesh-test-${process.pid}-${label}-${counter++}`;
}

export interface TestDaemon {
  daemon: Daemon;
  parts: Parts;
  pinDir: string;
  /** Stops every part and removes every pin (detaching the programs). */
  destroy(): Promise<void>;
}

export function configWithPinDir(toml: string, pinDir: string, logLevel = 'warn'): string {
  return `[daemon]\nlog_level = "${logLevel}"\npin_dir = "${pinDir}"\nrescan_interval_ms = 100\n\n${toml}`;
}

export async function startTestDaemon(
  label: string,
  toml: string,
  path = '/tmp/kmesh-test.toml',
  logger: Logger = pino({ level: 'warn' }),
): Promise<TestDaemon> {
  const pinDir = testPinDir(label);
  const config = parseConfig(configWithPinDir(toml, pinDir), path);
  let parts: Parts;
  try {
    parts = await startParts({ config, logger, pinDir });
  } catch (err) {
    cleanupPins(pinDir);
    throw err;
  }
  return {
    daemon: parts.daemon,
    parts,
    pinDir,
    async destroy() {
      try {
        await parts.stop();
      } finally {
        cleanupPins(pinDir);
      }
    },
  };
}
