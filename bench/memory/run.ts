/**
 * Where an idle daemon's memory goes (issue 13 item 4), measured on this machine:
 *   modules   a bare node (the daemon's V8 flags and environment) that imports one dependency, against one that
 *             imports nothing: resident set (VmRSS, split into anonymous and file-backed from smaps_rollup) and
 *             V8 heap after GC. Each is the median of --rounds runs.
 *   daemon    the real kmesh-daemon on an empty config (own pin directory, no services), and on the same config
 *             with an [xds] section (a local ADS server with nothing configured): wall and CPU time from spawn
 *             to "kmesh-daemon ready", and RSS 2 s later.
 * Needs root (the daemon loads its programs). Usage: node dist/bench/memory/run.js [--rounds N] [--json FILE]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';
import { XdsTestServer } from '../../test/fixtures/xds-server.js';
import { stopChild } from '../support/child.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const dist = join(root, 'dist', 'src');
const { values: args } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, json: { type: 'string' } },
});
const ROUNDS = Number(args.rounds);

interface Mem {
  rssMB: number;
  anonMB: number;
  fileMB: number;
  heapMB: number;
}

const mod = (p: string) => pathToFileURL(join(dist, p)).href;

/** What each probe imports (and does, for the ones whose cost is in the first use). */
const MODULES: Array<[string, string]> = [
  ['node (nothing imported)', ''],
  ['pino', "await import('pino');"],
  ['smol-toml', "await import('smol-toml');"],
  ['koffi + libbpf.so.1 bound', `await import('${mod('runtime/libbpf.js')}');`],
  ['prom-client', "await import('prom-client');"],
  ['dbus-next', "await import('dbus-next');"],
  ['@grpc/grpc-js', "await import('@grpc/grpc-js');"],
  ['protobufjs', "await import('protobufjs');"],
  ['protobufjs + xDS protos loaded', `(await import('${mod('api/xds/protos.js')}')).xdsTypes();`],
  [
    'xDS client (grpc-js + protobufjs + protos)',
    `(await import('${mod('api/xds/client.js')}')); (await import('${mod('api/xds/protos.js')}')).xdsTypes();`,
  ],
  [
    "the daemon's static imports",
    `await import('${mod('controller/daemon.js')}'); await import('${mod('probe/wire.js')}'); await import('pino');`,
  ],
];

function smapsMB(pid: number | 'self'): { rss: number; anon: number; file: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('Rss') / 1024, anon: kb('Anonymous') / 1024, file: (kb('Rss') - kb('Anonymous')) / 1024 };
}

function probeModule(code: string): Mem {
  const script = `${code}
globalThis.gc(); globalThis.gc();
await new Promise((r) => setTimeout(r, 200));
globalThis.gc();
const { readFileSync } = await import('node:fs');
const t = readFileSync('/proc/self/smaps_rollup', 'utf8');
const kb = (k) => Number(new RegExp('^' + k + ':\\\\s+(\\\\d+)', 'm').exec(t)[1]);
process.stdout.write(JSON.stringify({ rss: kb('Rss'), anon: kb('Anonymous'), heap: process.memoryUsage().heapUsed }));`;
  const out = execFileSync(
    process.execPath,
    [...DAEMON_NODE_FLAGS, '--expose-gc', '--input-type=module', '-e', script],
    {
      cwd: root,
      env: { ...process.env, ...DAEMON_ENV },
      encoding: 'utf8',
    },
  );
  const r = JSON.parse(out);
  return { rssMB: r.rss / 1024, anonMB: r.anon / 1024, fileMB: (r.rss - r.anon) / 1024, heapMB: r.heap / 1048576 };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

function medianMem(runs: Mem[]): Mem {
  const pick = (k: keyof Mem) => Number(median(runs.map((r) => r[k])).toFixed(1));
  return { rssMB: pick('rssMB'), anonMB: pick('anonMB'), fileMB: pick('fileMB'), heapMB: pick('heapMB') };
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // utime and stime are fields 14 and 15 of stat (11 and 12 after the command name), in clock ticks.
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface DaemonRun {
  readyMs: number;
  cpuS: number;
  rssMB: number;
  anonMB: number;
  fileMB: number;
}

async function runDaemon(extraToml: string): Promise<DaemonRun> {
  const tmp = mkdtempSync(join(tmpdir(), 'kmesh-bench-mem-'));
  const pinDir = `/sys/fs/bpf/kmesh-bench-mem-${process.pid}`;
  const toml = join(tmp, 'kmesh.toml');
  writeFileSync(toml, `[daemon]\nlog_level = "info"\npin_dir = "${pinDir}"\n${extraToml}`);
  let child: ChildProcess | undefined;
  try {
    const t0 = performance.now();
    child = spawn(
      process.execPath,
      [...DAEMON_NODE_FLAGS, join(dist, 'bin', 'kmesh-daemon.js'), '--config', toml, '--pin-dir', pinDir],
      { env: { ...process.env, ...DAEMON_ENV }, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const pid = child.pid as number;
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    const readyMs = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('daemon not ready within 30 s')), 30_000);
      child?.once('exit', (code) => reject(new Error(`daemon exited (${code})`)));
      lines.on('line', (line) => {
        if (line.includes('"kmesh-daemon ready"')) {
          clearTimeout(timer);
          resolve(performance.now() - t0);
        }
      });
    });
    const cpuS = cpuSeconds(pid);
    await new Promise((r) => setTimeout(r, 2000));
    const m = smapsMB(pid);
    return { readyMs: Number(readyMs.toFixed(0)), cpuS, rssMB: m.rss, anonMB: m.anon, fileMB: m.file };
  } finally {
    await stopChild(child);
    cleanupPins(pinDir);
    rmSync(tmp, { recursive: true, force: true });
  }
}

function medianRun(runs: DaemonRun[]): DaemonRun {
  const pick = (k: keyof DaemonRun, digits = 1) => Number(median(runs.map((r) => r[k])).toFixed(digits));
  return {
    readyMs: pick('readyMs', 0),
    cpuS: pick('cpuS', 2),
    rssMB: pick('rssMB'),
    anonMB: pick('anonMB'),
    fileMB: pick('fileMB'),
  };
}

async function main(): Promise<void> {
  const modules: Array<{ what: string } & Mem & { deltaRssMB: number; deltaHeapMB: number }> = [];
  let base: Mem | undefined;
  for (const [what, code] of MODULES) {
    const m = medianMem(Array.from({ length: ROUNDS }, () => probeModule(code)));
    base ??= m;
    modules.push({
      what,
      ...m,
      deltaRssMB: Number((m.rssMB - base.rssMB).toFixed(1)),
      deltaHeapMB: Number((m.heapMB - base.heapMB).toFixed(1)),
    });
  }

  const server = new XdsTestServer('m');
  const port = await server.start();
  const empty: DaemonRun[] = [];
  const withXds: DaemonRun[] = [];
  try {
    // Alternating rounds: the machine is shared, so both configs see the same noise.
    for (let i = 0; i < ROUNDS; i++) {
      empty.push(await runDaemon(''));
      withXds.push(await runDaemon(`\n[xds]\naddress = "127.0.0.1:${port}"\ninitial_backoff_ms = 100\n`));
    }
  } finally {
    await server.stop();
  }
  const result = { rounds: ROUNDS, modules, daemon: { empty: medianRun(empty), withXds: medianRun(withXds) } };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n\n`);
  const rows = modules.map(
    (m) =>
      `| ${m.what} | ${m.rssMB} | +${m.deltaRssMB} | ${m.anonMB} / ${m.fileMB} | ${m.heapMB} (+${m.deltaHeapMB}) |`,
  );
  process.stdout.write(
    [
      '| imported | RSS MB | Δ RSS | anon / file MB | V8 heap used MB (Δ) |',
      '|---|---|---|---|---|',
      ...rows,
      '',
      '| daemon | start → READY | CPU to READY | RSS MB | anon / file MB |',
      '|---|---|---|---|---|',
      ...(['empty', 'withXds'] as const).map((k) => {
        const d = result.daemon[k];
        return `| ${k === 'empty' ? 'empty config' : 'empty config + [xds]'} | ${d.readyMs} ms | ${d.cpuS} s | ${d.rssMB} | ${d.anonMB} / ${d.fileMB} |`;
      }),
      '',
    ].join('\n'),
  );
  if (args.json) writeFileSync(args.json, JSON.stringify(result, null, 2));
}

await main();
