/**
 * CPU profile of one full push, daemon and ADS server in this process (the daemon's own process cannot be
 * profiled from its start: the profiler's signals make program loading fail with EAGAIN). The profiler starts
 * once the daemon is up and the server's resources are encoded, and stops at the EDS ACK.
 * --changes N goes on profiling N one-endpoint changes after the push (RESEND=1: as full SotW resends); --heap FILE
 * writes a heap snapshot after it; --changes-only leaves the push out of the profile; BENCH_N sets the number of
 * clusters (default 1,000).
 * Needs root. Usage: node --optimize-for-size --max-semi-space-size=1 dist/bench/xds/profile.js [--out FILE]
 *   [--mode sotw|delta] [--changes N [--changes-only]] [--heap FILE]
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { parseArgs } from 'node:util';
import { writeHeapSnapshot } from 'node:v8';
import pino from 'pino';
import { startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { cluster, loadAssignment, TYPE, tcpListener, XdsTestServer } from '../../test/fixtures/xds-server.js';

const { values: args } = parseArgs({
  options: {
    out: { type: 'string', default: 'push.cpuprofile' },
    mode: { type: 'string', default: 'sotw' },
    heap: { type: 'string' },
    changes: { type: 'string', default: '0' },
    'changes-only': { type: 'boolean' },
  },
});
const N = Number(process.env.BENCH_N ?? 1000);
const name = (i: number) => `outbound|8080||svc${i}.bench.svc.cluster.local`;
const vip = (i: number) => `127.20.${i >> 8}.${i & 255}`;
const endpoints = (i: number) =>
  Array.from({ length: 10 }, (_, j) => ({
    address: `127.1.${((i * 10 + j) >> 8) & 255}.${(i * 10 + j) & 255}`,
    port: 20000 + j,
    weight: 1 + (j % 3),
  }));

const server = new XdsTestServer('p');
const port = await server.start();
const pinDir = `/sys/fs/bpf/kmesh-bench-xds-prof-${process.pid}`;
const config = parseConfig(
  `[daemon]\nlog_level = "info"\npin_dir = "${pinDir}"\n\n[xds]\naddress = "127.0.0.1:${port}"\nnode_id = "sidecar~127.0.0.1~bench.default~default.svc.cluster.local"\nmode = "${args.mode}"\n`,
  '/tmp/kmesh-prof.toml',
);
const parts = await startParts({ config, logger: pino({ level: 'info' }), pinDir });
try {
  await server.waitFor((r) => r.typeUrl === TYPE.cluster, 30_000);
  const clusters = Array.from({ length: N }, (_, i) => cluster({ name: name(i), lbPolicy: 'round_robin' }));
  const clas = Array.from({ length: N }, (_, i) => loadAssignment(name(i), endpoints(i)));
  const listeners = Array.from({ length: N }, (_, i) => tcpListener(vip(i), 8080, name(i)));
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  if (!args['changes-only']) await session.post('Profiler.start');
  const t0 = performance.now();
  server.set(TYPE.endpoint, clas);
  server.set(TYPE.cluster, clusters);
  server.set(TYPE.listener, listeners);
  const from = server.requests.length;
  await server.waitFor(
    (r) => r.typeUrl === TYPE.endpoint && r.versionInfo === server.version(TYPE.endpoint) && r.kind === 'ack',
    60_000,
    from,
  );
  const ms = performance.now() - t0;
  // --changes N: the profile goes on over N one-endpoint changes (EDS, only that assignment), after the grace period
  const n = Number(args.changes);
  const changeMs: number[] = [];
  if (n > 0) await new Promise((r) => setTimeout(r, 1500));
  if (args['changes-only']) await session.post('Profiler.start');
  for (let k = 1; k <= n; k++) {
    const i = (k * 37) % N;
    const eps = endpoints(i);
    eps[0] = { ...(eps[0] as (typeof eps)[0]), port: 30000 + k };
    clas[i] = loadAssignment(name(i), eps);
    const at = server.requests.length;
    const c0 = performance.now();
    const version = server.set(TYPE.endpoint, clas, process.env.RESEND ? undefined : [name(i)]);
    await server.waitFor(
      (r) => r.typeUrl === TYPE.endpoint && r.versionInfo === version && r.kind === 'ack',
      10_000,
      at,
    );
    changeMs.push(performance.now() - c0);
  }
  const { profile } = await session.post('Profiler.stop');
  if (n > 0) process.stdout.write(`changes: ${changeMs.map((x) => x.toFixed(1)).join(' ')} ms\n`);
  writeFileSync(args.out, JSON.stringify(profile));
  process.stdout.write(`push ${ms.toFixed(1)} ms; profile in ${args.out}\n`);
  // Where the process's memory is once the grace period is over (daemon and server together).
  await new Promise((r) => setTimeout(r, 2500));
  const mb = (x: number) => (x / 1048576).toFixed(1);
  const m = process.memoryUsage();
  process.stdout.write(
    `memory: rss ${mb(m.rss)} MB, V8 heap used ${mb(m.heapUsed)} of ${mb(m.heapTotal)} MB, external ${mb(m.external)} MB (array buffers ${mb(m.arrayBuffers)} MB)\n`,
  );
  if (args.heap) {
    // --heap FILE: a heap snapshot once the grace period is over (what the daemon holds for this config)
    writeHeapSnapshot(args.heap);
  }
} finally {
  await parts.stop();
  cleanupPins(pinDir);
  await server.stop();
}
