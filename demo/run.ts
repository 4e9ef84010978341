/**
 * `npm run demo`: the daemon on an embedded config, proving the data path live.
 * Three loopback backends play reviews-v1 (two replicas) and reviews-v2; the
 * listener reviews = 127.10.0.5:9080 sends 80 % to v1 (round robin) and 20 % to v2.
 * A client in a registered cgroup asks the VIP; each round prints where its
 * requests landed. Next to this L4 split, the http listener reviews-http =
 * 127.10.0.6:9080 routes each connection by its first request, in the kernel: a
 * header canary (x-canary: 1) and a path route (/v2/...) go to reviews-v2, the
 * rest to reviews-v1. Ctrl-C (or --rounds N) stops everything and removes it all.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, get, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../src/controller/node-flags.js';
import { findCgroup2Mount } from '../src/runtime/cgroup2.js';

const here = dirname(fileURLToPath(import.meta.url));
const DAEMON = join(here, '..', 'src', 'bin', 'kmesh-daemon.js');
const CLIENT = join(here, 'client.js');
const VIP = '127.10.0.5';
/** The http listener with L7 routes. */
const HTTP_VIP = '127.10.0.6';
const PIN_DIR = '/sys/fs/bpf/kmesh-demo';
const REQUESTS = 200;
const BACKENDS = [
  { name: 'reviews-v1 (replica a)', port: 17081 },
  { name: 'reviews-v1 (replica b)', port: 17082 },
  { name: 'reviews-v2', port: 17083 },
];

const { values } = parseArgs({ options: { rounds: { type: 'string' } } });
const rounds = values.rounds ? Number(values.rounds) : Number.POSITIVE_INFINITY;

const cgroup = join(findCgroup2Mount(), `kmesh-demo-${process.pid}`);
const workDir = mkdtempSync(join(tmpdir(), 'kmesh-demo-'));
const configPath = join(workDir, 'kmesh.toml');
const servers: Server[] = [];
let daemon: ChildProcess | undefined;
let cleaned = false;

function demoConfig(): string {
  return `# The embedded demo configuration (${configPath})
[daemon]
log_level = "info"
pin_dir = "${PIN_DIR}"

[metrics]
listen = "127.0.0.1:15020"

[[services]]
cgroup = "${cgroup}"

[[clusters]]
name = "reviews-v1"
lb_policy = "round_robin"
endpoints = [ { address = "127.0.0.1", port = 17081 }, { address = "127.0.0.1", port = 17082 } ]

[[clusters]]
name = "reviews-v2"
endpoints = [ { address = "127.0.0.1", port = 17083 } ]

[[listeners]]
name = "reviews"
address = "${VIP}"
port = 9080
weighted_clusters = [ { cluster = "reviews-v1", weight = 80 }, { cluster = "reviews-v2", weight = 20 } ]

# L7: routed by the first request of each connection, in the kernel
[[listeners]]
name = "reviews-http"
address = "${HTTP_VIP}"
port = 9080
protocol = "http"
cluster = "reviews-v1"

[[listeners.routes]]
name = "canary"
match = { headers = [ { name = "x-canary", exact = "1" } ] }
cluster = "reviews-v2"

[[listeners.routes]]
name = "v2-path"
match = { path_prefix = "/v2/" }
cluster = "reviews-v2"
`;
}

async function startBackends(): Promise<void> {
  for (const b of BACKENDS) {
    const server = createServer((_req, res) => res.end(`${b.name}\n`));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(b.port, '127.0.0.1', resolve);
    });
    servers.push(server);
  }
}

function startDaemon(): Promise<void> {
  return new Promise((resolve, reject) => {
    daemon = spawn(process.execPath, [...DAEMON_NODE_FLAGS, DAEMON, '--config', configPath], {
      env: { ...process.env, ...DAEMON_ENV },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let buffered = '';
    daemon.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as { msg: string };
          process.stdout.write(`  [kmesh-daemon] ${entry.msg}\n`);
          if (entry.msg === 'kmesh-daemon ready') resolve();
        } catch {
          process.stdout.write(`  [kmesh-daemon] ${line}\n`);
        }
      }
    });
    daemon.on('exit', (code) => reject(new Error(`kmesh-daemon exited (${code}) before it was ready`)));
  });
}

/** Runs the client, placed in `inCgroup` when given; returns its answers. */
function ask(inCgroup: string | null, count: number, url = `http://${VIP}:9080/`, header = ''): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLIENT, url, String(count), header], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.on('exit', () => {
      try {
        resolve(JSON.parse(out) as string[]);
      } catch {
        reject(new Error(`client printed: ${out}`));
      }
    });
    if (inCgroup && child.pid) writeFileSync(join(inCgroup, 'cgroup.procs'), String(child.pid));
    child.stdin.end('go\n');
  });
}

function printRound(round: number, answers: string[]): void {
  const tally = new Map<string, number>();
  for (const a of answers) tally.set(a, (tally.get(a) ?? 0) + 1);
  process.stdout.write(
    `\nround ${round}: ${answers.length} requests to http://${VIP}:9080/ from the registered cgroup\n`,
  );
  const expected: Record<string, number> = {
    'reviews-v1 (replica a)': 40,
    'reviews-v1 (replica b)': 40,
    'reviews-v2': 20,
  };
  for (const [name, n] of [...tally].sort()) {
    const share = ((100 * n) / answers.length).toFixed(1);
    const bar = '#'.repeat(Math.round((40 * n) / answers.length));
    process.stdout.write(
      `  ${name.padEnd(24)} ${String(n).padStart(4)}  ${share.padStart(5)} %  (configured ${expected[name] ?? 0} %)  ${bar}\n`,
    );
  }
}

function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  if (daemon && daemon.exitCode === null) {
    daemon.removeAllListeners('exit');
    daemon.kill('SIGTERM');
  }
  // --cleanup detaches the programs and removes every pin the demo made.
  spawnSync(process.execPath, [DAEMON, '--cleanup', '--pin-dir', PIN_DIR], { stdio: 'inherit' });
  for (const server of servers) server.close();
  try {
    rmdirSync(cgroup);
  } catch {
    /* not created, or already gone */
  }
  rmSync(workDir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  process.on('SIGINT', () => {
    process.stdout.write('\nCtrl-C: stopping the demo and removing everything it attached\n');
    cleanup();
    process.exit(0);
  });
  mkdirSync(cgroup);
  writeFileSync(configPath, demoConfig());
  process.stdout.write(demoConfig().replace(/^/gm, '  | '));
  await startBackends();
  await startDaemon();

  const outside = await ask(null, 1);
  process.stdout.write(`\nan unregistered process asking the VIP gets: ${outside[0]} (Kmesh leaves it alone)\n`);
  for (let round = 1; round <= rounds; round++) {
    printRound(round, await ask(cgroup, REQUESTS));
    if (round < rounds) await new Promise((resolve) => setTimeout(resolve, 2000));
  }
  process.stdout.write(`\nL7 routes on http://${HTTP_VIP}:9080 (first request of each connection, in the kernel):\n`);
  for (const [what, path, header] of [
    ['x-canary: 1', '/reviews', 'x-canary: 1'],
    ['path /v2/', '/v2/reviews', ''],
    ['no route', '/reviews', ''],
  ] as const) {
    const [answer] = await ask(cgroup, 1, `http://${HTTP_VIP}:9080${path}`, header);
    process.stdout.write(`  GET ${path.padEnd(12)} ${what.padEnd(12)} -> ${answer}\n`);
  }
  const metrics = await fetchText('http://127.0.0.1:15020/metrics');
  const opened = metrics.split('\n').filter((l) => l.startsWith('kmesh_tcp_connections_opened_total{'));
  process.stdout.write(
    `\nwhat kmesh-probe counted (GET http://127.0.0.1:15020/metrics):\n${opened.map((l) => `  ${l}`).join('\n')}\n`,
  );
}

function fetchText(url: string): Promise<string> {
  return new Promise((resolve) => {
    get(url, (res) => {
      let body = '';
      res.on('data', (chunk) => {
        body += chunk;
      });
      res.on('end', () => resolve(body));
    }).on('error', (err) => resolve(`(metrics unavailable: ${err.message})`));
  });
}

try {
  await main();
} catch (err) {
  process.stderr.write(`demo failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
} finally {
  cleanup();
}
