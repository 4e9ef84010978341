/**
 * bench/l7 — L7 routing benchmark (issue 14 item 6). One run on loopback, HTTP/1.1, wrk at
 * fixed concurrency, keep-alive and a new connection per request, three paths, the request
 * matched by a header route (x-canary: 1 → v2):
 *   a  direct:  wrk → nginx v2
 *   b  kmesh:   wrk in a registered cgroup → VIP, routed by the first request in the kernel
 *               onto a pooled upstream socket (the daemon process runs, its CPU is counted)
 *   c  haproxy: wrk → haproxy A (routes on x-canary) → haproxy B → nginx v2
 *   h  kmesh, hashed: as b, with x-user: the first route, whose maglev cluster (the same nginx) picks the
 *      endpoint by the header's value (the hash stage); h/b is the cost of hashing
 * Paths alternate round by round; medians of req/s and p99 per path and mode, ratios b/a
 * and b/c (and h/b), daemon CPU per 1000 requests; floors: keep-alive b/a ≥ 0.75 and b/c ≥ 2,
 * new connection b/a ≥ 0.50 and b/c ≥ 1.5.
 * CPU placement (2 cores): wrk and haproxy A on CPU 0, nginx and haproxy B on CPU 1, the daemon free.
 *
 * Usage (root, after npm run build): node dist/bench/l7/run.js [--duration S] [--reps N] [--connections N]
 *   [--modes keepalive,close] [--json FILE]      Ports 35100-35199 and VIP 127.45.1.1 are used.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findCgroup2Mount } from '../../src/runtime/cgroup2.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i] ?? '', process.argv[i + 1] ?? '');
const DURATION = Number(args.get('--duration') ?? 3);
const REPS = Number(args.get('--reps') ?? 5);
const CONNS = Number(args.get('--connections') ?? 32);
const MODES = (args.get('--modes') ?? 'keepalive,close').split(',');
const JSON_OUT = args.get('--json');

const P = { v1: 35101, v2: 35102, haA: 35111, haBv1: 35112, haBv2: 35113, vip: 35180 };
const VIP = '127.45.1.1';
const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(HERE, '..', '..', '..');
const LUA = join(ROOT, 'bench', 'l4', 'wrk-report.lua');

const work = mkdtempSync('/tmp/kmesh-bench-l7.');
chmodSync(work, 0o755); // nginx workers (user nobody) read the files
const children: ChildProcess[] = [];
let cgroup = '';

function start(cpu: string | null, cmd: string, argv: string[]): ChildProcess {
  const child = cpu
    ? spawn('taskset', ['-c', cpu, cmd, ...argv], { stdio: ['ignore', 'pipe', 'inherit'] })
    : spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  return child;
}

function cleanup(): void {
  for (const c of children.reverse()) if (c.exitCode === null) c.kill('SIGTERM');
  if (cgroup) {
    for (let i = 0; i < 50; i++) {
      try {
        rmdirSync(cgroup);
        break;
      } catch {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
      }
    }
  }
  rmSync(work, { recursive: true, force: true });
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function nginxConf(): string {
  mkdirSync(join(work, 'www-v1'));
  mkdirSync(join(work, 'www-v2'));
  writeFileSync(join(work, 'www-v1', 'index.html'), 'v1\n');
  writeFileSync(join(work, 'www-v2', 'index.html'), 'v2\n');
  mkdirSync(join(work, 'tmp'));
  return `worker_processes 1; daemon off; pid ${work}/nginx.pid; error_log ${work}/nginx.log warn;
events { worker_connections 8192; }
http { access_log off; client_body_temp_path ${work}/tmp; proxy_temp_path ${work}/tmp; fastcgi_temp_path ${work}/tmp;
  uwsgi_temp_path ${work}/tmp; scgi_temp_path ${work}/tmp; default_type text/plain; sendfile on; tcp_nodelay on; open_file_cache max=16; open_file_cache_valid 60s;
  keepalive_requests 100000000; keepalive_timeout 60s;
  server { listen 127.0.0.1:${P.v1} backlog=4096; root ${work}/www-v1; }
  server { listen 127.0.0.1:${P.v2} backlog=4096; root ${work}/www-v2; } }
`;
}

function haproxyConf(frontends: string): string {
  return `global
  nbthread 1
  maxconn 8000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
${frontends}`;
}

interface WrkResult {
  requests: number;
  duration_us: number;
  p99_us: number;
  errors: Record<string, number>;
}

function wrk(url: string, mode: string, inCgroup: boolean, extra: string[] = []): Promise<WrkResult> {
  const headers = ['-H', 'x-canary: 1', ...extra, ...(mode === 'close' ? ['-H', 'Connection: close'] : [])];
  const argv = ['-c', '0', 'wrk', '-t', '1', '-c', String(CONNS), '-d', `${DURATION}s`, '-s', LUA, ...headers, url];
  const child = inCgroup
    ? spawn('sh', ['-c', 'echo $$ > "$0/cgroup.procs" && exec taskset "$@"', cgroup, ...argv], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
    : spawn('taskset', argv, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout?.on('data', (c) => {
    out += c;
  });
  return new Promise((resolve, reject) =>
    child.on('close', () => {
      const line = out.split('\n').find((l) => l.startsWith('WRK_RESULT '));
      if (!line) reject(new Error(`wrk: no result (${out})`));
      else resolve(JSON.parse(line.slice('WRK_RESULT '.length)));
    }),
  );
}

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, clock ticks of 10 ms
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2
    ? (s[(s.length - 1) / 2] as number)
    : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

async function waitReady(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`daemon exited ${code}`)));
  });
}

/** The peers come from Debian (scripts/deps.sh installs what is missing). */
function installPeers(): void {
  const missing = ['wrk', 'haproxy', 'nginx', 'taskset'].filter(
    (t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0,
  );
  if (missing.length === 0) return;
  const r = spawnSync('bash', [join(ROOT, 'scripts', 'deps.sh'), 'wrk', 'haproxy', 'nginx-light', 'util-linux'], {
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`cannot install ${missing.join(', ')}`);
}

async function main(): Promise<void> {
  installPeers();
  writeFileSync(join(work, 'nginx.conf'), nginxConf());
  start('1', 'nginx', ['-e', `${work}/nginx.log`, '-p', `${work}/`, '-c', `${work}/nginx.conf`]);
  writeFileSync(
    join(work, 'ha-a.cfg'),
    haproxyConf(`frontend fe_a
  bind 127.0.0.1:${P.haA}
  acl canary req.hdr(x-canary) -m str 1
  use_backend be_v2 if canary
  default_backend be_v1
backend be_v1
  server b 127.0.0.1:${P.haBv1}
backend be_v2
  server b 127.0.0.1:${P.haBv2}
`),
  );
  writeFileSync(
    join(work, 'ha-b.cfg'),
    haproxyConf(`frontend fe_v1
  bind 127.0.0.1:${P.haBv1}
  default_backend be_v1
frontend fe_v2
  bind 127.0.0.1:${P.haBv2}
  default_backend be_v2
backend be_v1
  server n 127.0.0.1:${P.v1}
backend be_v2
  server n 127.0.0.1:${P.v2}
`),
  );
  start('0', 'haproxy', ['-f', join(work, 'ha-a.cfg')]);
  start('1', 'haproxy', ['-f', join(work, 'ha-b.cfg')]);
  cgroup = join(findCgroup2Mount(), `kmesh-bench-l7-${process.pid}`);
  mkdirSync(cgroup);
  const daemon = start(null, process.execPath, [
    ...(process.env.BENCH_L7_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_L7_PROF] : []),
    join(HERE, 'daemon.js'),
    `/sys/fs/bpf/kmesh-bench-l7-${process.pid}`,
    cgroup,
    VIP,
    String(P.vip),
    String(P.v1),
    String(P.v2),
  ]);
  await waitReady(daemon);
  await new Promise((r) => setTimeout(r, 500));

  const paths = {
    a: { url: `http://127.0.0.1:${P.v2}/`, cgroup: false },
    b: { url: `http://${VIP}:${P.vip}/`, cgroup: true },
    c: { url: `http://127.0.0.1:${P.haA}/`, cgroup: false },
    h: { url: `http://${VIP}:${P.vip}/`, cgroup: true, headers: ['-H', 'x-user: bench-user-1'] },
  } as const;
  // the route must be the one measured
  const check = await wrk(paths.b.url, 'keepalive', true);
  if (check.requests === 0) throw new Error('path b answers nothing');

  const results: Record<
    string,
    Record<string, { rps: number[]; p99: number[]; errors: number; daemonMsPer1k: number[] }>
  > = {};
  for (const mode of MODES) {
    results[mode] = {};
    for (const p of Object.keys(paths)) results[mode][p] = { rps: [], p99: [], errors: 0, daemonMsPer1k: [] };
    for (let rep = 0; rep < REPS; rep++) {
      for (const [name, path] of Object.entries(paths)) {
        const before = cpuMs(daemon.pid as number);
        const r = await wrk(path.url, mode, path.cgroup, 'headers' in path ? [...path.headers] : []);
        const spent = cpuMs(daemon.pid as number) - before;
        const slot = results[mode][name] as (typeof results)[string][string];
        slot.rps.push(r.requests / (r.duration_us / 1e6));
        slot.p99.push(r.p99_us);
        slot.errors += Object.values(r.errors).reduce((s, n) => s + n, 0);
        if (name === 'b' || name === 'h') slot.daemonMsPer1k.push((spent * 1000) / Math.max(1, r.requests));
      }
    }
  }

  const floors: Record<string, { a: number; c: number }> = { keepalive: { a: 0.75, c: 2 }, close: { a: 0.5, c: 1.5 } };
  const summary: Record<string, unknown> = {};
  console.log(`\nL7 bench: ${CONNS} connections, ${DURATION}s x ${REPS} rounds per path and mode, medians`);
  console.log('mode       path        req/s     p99 ms   errors  daemon CPU ms/1k req');
  for (const mode of MODES) {
    const m = results[mode] as (typeof results)[string];
    const med = (p: string) => median(m[p]?.rps ?? []);
    for (const p of ['a', 'b', 'c', 'h']) {
      const r = m[p] as (typeof m)[string];
      console.log(
        `${mode.padEnd(10)} ${p.padEnd(8)} ${med(p).toFixed(0).padStart(9)} ${(median(r.p99) / 1000).toFixed(2).padStart(9)} ${String(r.errors).padStart(8)}  ${p === 'b' || p === 'h' ? median(r.daemonMsPer1k).toFixed(1) : ''}`,
      );
    }
    const ba = med('b') / med('a');
    const bc = med('b') / med('c');
    const floor = floors[mode] as { a: number; c: number };
    console.log(
      `${mode}: b/a = ${ba.toFixed(2)} (floor ${floor.a}) ${ba >= floor.a ? 'ok' : 'MISSED'}; b/c = ${bc.toFixed(2)} (floor ${floor.c}) ${bc >= floor.c ? 'ok' : 'MISSED'}; h/b = ${(med('h') / med('b')).toFixed(2)}`,
    );
    summary[mode] = {
      rps: { a: med('a'), b: med('b'), c: med('c'), h: med('h') },
      p99_ms: Object.fromEntries(['a', 'b', 'c', 'h'].map((p) => [p, median(m[p]?.p99 ?? []) / 1000])),
      errors: Object.fromEntries(['a', 'b', 'c', 'h'].map((p) => [p, m[p]?.errors])),
      daemon_cpu_ms_per_1k: median(m.b?.daemonMsPer1k ?? []),
      ratio_b_a: ba,
      ratio_b_c: bc,
      ratio_h_b: med('h') / med('b'),
    };
  }
  const json = JSON.stringify({ connections: CONNS, duration_s: DURATION, reps: REPS, ...summary });
  console.log(json);
  if (JSON_OUT) writeFileSync(JSON_OUT, json);
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.on('exit', r));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench/l7: ${(err as Error).message}`);
    process.exit(1);
  },
);
