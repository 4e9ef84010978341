/**
 * Cgroup churn: a registered cgroup path removed and re-created (a restarted service) is attached again by
 * inotify within 50 ms of its creation — with the rescan timer at 60 s it cannot be the timer — and the
 * first connect of a process placed in it right after is steered, every time.
 * Ports 31010-31019, VIP 127.41.1.1, a test-made cgroup only.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { test } from 'node:test';
import pino from 'pino';
import { startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import type { Daemon } from '../../src/controller/daemon.js';
import { makeCgroup } from './support/cgroup.js';
import { testPinDir } from './support/daemon.js';
import { dialFrom, tcpBackends } from './support/peers.js';

const CYCLES = 20;

/** When the daemon next reports `change` for a service (performance.now()), or Infinity after 1 s. */
function nextChange(daemon: Daemon, change: string): Promise<number> {
  return new Promise((resolve) => {
    const settle = (at: number) => {
      clearTimeout(timer);
      daemon.off('service-changed', on);
      resolve(at);
    };
    const on = (_: string, what: string) => {
      if (what === change) settle(performance.now());
    };
    const timer = setTimeout(() => settle(Number.POSITIVE_INFINITY), 1000);
    daemon.on('service-changed', on);
  });
}

test(`a registered cgroup re-created ${CYCLES} times is re-attached by inotify within 50 ms, first connect steered`, async (t) => {
  const cg = makeCgroup('churn');
  t.after(() => cg.remove());
  const backends = await tcpBackends([{ name: 'c', host: '127.0.0.1', port: 31011 }]);
  t.after(() => backends.close());
  const pinDir = testPinDir('churn');
  const toml = `[daemon]\nlog_level = "warn"\npin_dir = "${pinDir}"\nrescan_interval_ms = 60000\n[[services]]\ncgroup = "${cg.path}"\n[[clusters]]\nname = "c"\nendpoints = [ { address = "127.0.0.1", port = 31011 } ]\n[[listeners]]\nname = "c"\naddress = "127.41.1.1"\nport = 31010\ncluster = "c"\n`;
  const config = parseConfig(toml, '/tmp/kmesh-churn.toml');
  const parts = await startParts({ config, logger: pino({ level: 'warn' }), pinDir });
  const { daemon } = parts;
  t.after(async () => {
    await parts.stop();
    cleanupPins(pinDir);
  });
  assert.equal(daemon.listServices()[0]?.attached, true);

  const latencies: number[] = [];
  const unsteered: string[] = [];
  for (let i = 0; i < CYCLES; i++) {
    const detached = nextChange(daemon, 'detached');
    cg.remove();
    await detached; // inotify sees the rmdir too
    const attached = nextChange(daemon, 'attached');
    const created = performance.now();
    mkdirSync(cg.path);
    latencies.push((await attached) - created);
    const [first] = await dialFrom(cg.path, 'tcp', '127.41.1.1', 31010, 1);
    if (first?.reply !== 'c') unsteered.push(JSON.stringify(first));
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  t.diagnostic(
    `re-attach after mkdir over ${CYCLES} cycles: median ${sorted[CYCLES >> 1]?.toFixed(1)} ms, max ${sorted.at(-1)?.toFixed(1)} ms`,
  );
  assert.deepEqual(unsteered, [], 'first connects that were not steered');
  assert.ok((sorted.at(-1) ?? Infinity) < 50, `slowest re-attach ${sorted.at(-1)} ms`);
});
