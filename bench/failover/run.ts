/**
 * Failover measurement (issue 12, point 8): three backends behind one VIP under load from a registered cgroup;
 * one backend is killed mid-run. Reports the failed connects (before the kernel ejected it), the time from the
 * kill to the ejection (last failed connect, and when the kernel state said "ejected"), and the load after it.
 *
 *   sudo node dist/bench/failover/run.js [--policy round_robin|least_request] [--concurrency 8] [--duration-ms 4000]
 *
 * Uses backends on 127.44.1.10:34200-34202 (an address of its own: 127.0.0.1's ports are also ephemeral ports) and
 * the VIP 127.44.1.1:34200; everything it creates is removed at the end.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { type Parts, startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { findCgroup2Mount } from '../../src/runtime/cgroup2.js';

const { values } = parseArgs({
  options: {
    policy: { type: 'string', default: 'round_robin' },
    concurrency: { type: 'string', default: '8' },
    'duration-ms': { type: 'string', default: '4000' },
    failures: { type: 'string', default: '5' },
  },
});
const PORTS = [34200, 34201, 34202];
const VIP = '127.44.1.1';
const KILL_AT_MS = 1000;
const here = dirname(fileURLToPath(import.meta.url));

function backend(port: number): Promise<ChildProcess> {
  const code = `require('node:net').createServer((s) => s.end('${port}\\n')).listen(${port}, '127.44.1.10', () => process.stdout.write('up\\n'));`;
  const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (c) => reject(new Error(`backend ${port} exited ${c}`)));
    child.stdout?.once('data', () => resolve(child));
  });
}

const cgroup = join(findCgroup2Mount(), `kmesh-bench-failover-${process.pid}`);
const pinDir = `/sys/fs/bpf/kmesh-bench-failover-${process.pid}`;
mkdirSync(cgroup);
const children: ChildProcess[] = [];
let parts: Parts | undefined;
try {
  for (const port of PORTS) children.push(await backend(port));
  const toml = `[daemon]
log_level = "warn"
pin_dir = "${pinDir}"
[[services]]
cgroup = "${cgroup}"
[[clusters]]
name = "failover"
lb_policy = "${values.policy}"
outlier_detection = { consecutive_failures = ${values.failures}, base_ejection_time_ms = 30000 }
endpoints = [ ${PORTS.map((p) => `{ address = "127.44.1.10", port = ${p} }`).join(', ')} ]
[[listeners]]
name = "failover"
address = "${VIP}"
port = 34200
cluster = "failover"
`;
  parts = await startParts({
    config: parseConfig(toml, '/tmp/kmesh-failover.toml'),
    logger: pino({ level: 'warn' }),
    pinDir,
  });
  const running = parts.daemon;

  const client = spawn(
    process.execPath,
    [join(here, 'load-client.js'), VIP, '34200', values.concurrency ?? '8', values['duration-ms'] ?? '4000'],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  children.push(client);
  let out = '';
  client.stdout?.on('data', (c) => {
    out += c;
  });
  writeFileSync(join(cgroup, 'cgroup.procs'), String(client.pid));
  const now = () => performance.timeOrigin + performance.now();
  const t0 = now();
  const sinceStart = () => now() - t0;
  client.stdin?.end('go\n');
  await new Promise((r) => setTimeout(r, KILL_AT_MS));
  const victim = children[1] as ChildProcess;
  victim.kill('SIGKILL');
  await new Promise((r) => victim.once('exit', r));
  const killedAt = sinceStart();
  let ejectedSeenAt: number | undefined;
  while (ejectedSeenAt === undefined && sinceStart() < Number(values['duration-ms'])) {
    if (running.endpointStatus('failover').some((e) => !e.healthy)) ejectedSeenAt = sinceStart();
    else await new Promise((r) => setTimeout(r, 1));
  }
  await new Promise((r) => client.once('exit', r));
  // the client's clock (epoch ms) as ms since t0
  const results = (JSON.parse(out) as Array<[number, string]>).map(([at, r]): [number, string] => [at - t0, r]);
  const failed = results.filter(([, reply]) => reply.startsWith('error:'));
  const after = results.filter(([at]) => at > killedAt);
  const lastFailure = failed.at(-1)?.[0];
  const summary = {
    policy: values.policy,
    concurrency: Number(values.concurrency),
    consecutive_failures: Number(values.failures),
    connects_total: results.length,
    connects_per_s: Math.round(results.length / (Number(values['duration-ms']) / 1000)),
    killed_at_ms: Math.round(killedAt),
    failed_connects: failed.length,
    failure_codes: [...new Set(failed.map(([, r]) => r))],
    last_failure_after_kill_ms: lastFailure === undefined ? null : Math.round((lastFailure - killedAt) * 10) / 10,
    ejection_seen_after_kill_ms: ejectedSeenAt === undefined ? null : Math.round((ejectedSeenAt - killedAt) * 10) / 10,
    connects_after_kill: after.length,
    served_after_kill_by: Object.fromEntries(PORTS.map((p) => [p, after.filter(([, r]) => r === String(p)).length])),
    endpoints: running
      .endpointStatus('failover')
      .map((e) => ({ port: e.port, healthy: e.healthy, failures: e.failuresTotal })),
  };
  console.log(JSON.stringify(summary, null, 2));
} finally {
  for (const c of children) c.kill('SIGKILL');
  await parts?.stop();
  cleanupPins(pinDir);
  for (let i = 0; i < 50; i++) {
    try {
      rmdirSync(cgroup);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
