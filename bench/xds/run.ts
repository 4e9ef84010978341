/**
 * xDS benchmark (issue 3, point 8). A real daemon process (programs loaded, maps pinned under its own bpffs
 * directory, no cgroup attached) is driven by the in-repo ADS server:
 *   full push   1,000 EDS clusters × 10 endpoints + 1,000 listeners, pushed at once (CDS, EDS, LDS)
 *   one change  one endpoint of one cluster changed, pushed as istiod does (only that ClusterLoadAssignment)
 *               and as a full SotW EDS resend of all 1,000 assignments
 *   RSS         the daemon's resident set after all of it
 * Times are taken inside the daemon, from the arrival of the response to the apply that leaves the maps
 * consistent (the client logs both instants); the full push spans CDS arrival → EDS applied, including the
 * EDS subscription round trip. Map contents are then checked with bpftool on the pinned maps.
 *
 * `--mode delta` runs the daemon with `[xds] mode = "delta"`: the same pushes then travel as incremental xDS (the
 * server sends only the changed resources), and "one change" times a delta one-endpoint change.
 *
 * Needs root. Usage: node dist/bench/xds/run.js [--json FILE] [--changes N] [--strict] [--mode sotw|delta]
 * Floors: full push ≤ 500 ms, one change ≤ 20 ms, RSS ≤ 96 MB.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';
import {
  cluster,
  type EpSpec,
  loadAssignment,
  type Res,
  TYPE,
  tcpListener,
  XdsTestServer,
} from '../../test/fixtures/xds-server.js';
import { stopChild } from '../support/child.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const { values: args } = parseArgs({
  options: {
    json: { type: 'string' },
    changes: { type: 'string', default: '20' },
    strict: { type: 'boolean' },
    mode: { type: 'string', default: 'sotw' },
  },
});
if (args.mode !== 'sotw' && args.mode !== 'delta') throw new Error('--mode must be sotw or delta');
const DELTA = args.mode === 'delta';
const N_CLUSTERS = 1000;
const N_ENDPOINTS = 10;
const N_LISTENERS = 1000;
const FLOORS = { fullPushMs: 500, oneChangeMs: 20, rssMB: 96 };

interface Applied {
  type: string;
  version: string;
  ms: number;
  arrivedAt: number;
  doneAt: number;
}

function daemonEntry(): { path: string; kind: string } {
  return { path: join(root, 'dist', 'src', 'bin', 'kmesh-daemon.js'), kind: 'kmesh-daemon' };
}

const name = (i: number) => `outbound|8080||svc${i}.bench.svc.cluster.local`;
const vip = (i: number) => `127.20.${i >> 8}.${i & 255}`;
const endpoints = (i: number, bump = 0): EpSpec[] =>
  Array.from({ length: N_ENDPOINTS }, (_, j) => ({
    address: `127.1.${((i * N_ENDPOINTS + j) >> 8) & 255}.${(i * N_ENDPOINTS + j) & 255}`,
    port: 20000 + j + (j === 0 ? bump : 0),
    weight: 1 + (j % 3),
  }));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? Number.NaN;
}

function rssMB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}

function pinnedEntries(pinDir: string, map: string): number {
  return JSON.parse(
    execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(pinDir, 'maps', map)], {
      encoding: 'utf8',
      maxBuffer: 256 << 20,
    }),
  ).length;
}

async function main(): Promise<void> {
  const server = new XdsTestServer('b');
  const port = await server.start();
  const tmp = mkdtempSync(join(tmpdir(), 'kmesh-bench-xds-'));
  const pinDir = `/sys/fs/bpf/kmesh-bench-xds-${process.pid}`;
  const toml = join(tmp, 'kmesh.toml');
  writeFileSync(
    toml,
    `[daemon]\nlog_level = "info"\npin_dir = "${pinDir}"\n\n[xds]\naddress = "127.0.0.1:${port}"\nnode_id = "sidecar~127.0.0.1~bench.default~default.svc.cluster.local"\ninitial_backoff_ms = 100\nmode = "${args.mode}"\n`,
  );
  const entry = daemonEntry();
  let child: ChildProcess | undefined;
  const applied: Applied[] = [];
  /** The daemon's own "config applied" timings: the reconciler's share of each apply. */
  const reconcileMs: number[] = [];
  const waiters: Array<() => void> = [];
  try {
    // BENCH_DAEMON_NODE_ARGS, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof", to profile the daemon side.
    const nodeArgs = [...DAEMON_NODE_FLAGS, ...(process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean)];
    child = spawn(process.execPath, [...nodeArgs, entry.path, '--config', toml, '--pin-dir', pinDir], {
      env: { ...process.env, ...DAEMON_ENV },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      try {
        const rec = JSON.parse(line);
        if (rec.msg === 'config applied') reconcileMs.push(Number(rec.ms));
        if (rec.msg === 'xds: applied') {
          applied.push(rec as Applied);
          for (const w of waiters.splice(0)) w();
        } else if (rec.level >= 50) process.stderr.write(`daemon: ${line}\n`);
      } catch {
        /* not a log line */
      }
    });
    const exited = new Promise<never>((_, reject) =>
      child?.once('exit', (code) => reject(new Error(`daemon exited (${code})`))),
    );
    exited.catch(() => {}); // observed through the races below; must not crash the bench before its cleanup
    const appliedOf = async (type: string, version: string, timeoutMs = 30_000): Promise<Applied> => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hit = applied.find((a) => a.type === type && a.version === version);
        if (hit) return hit;
        if (Date.now() > deadline) throw new Error(`no apply of ${type} ${version}`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), new Promise((r) => setTimeout(r, 200)), exited]);
      }
    };
    await Promise.race([server.waitFor((r) => r.typeUrl === TYPE.cluster, 30_000), exited]);

    const memBefore = rssMB(child.pid as number);
    // Resources are encoded before the clock starts: the bench times the daemon, not the fixture.
    const clusters: Res[] = Array.from({ length: N_CLUSTERS }, (_, i) =>
      cluster({ name: name(i), lbPolicy: 'round_robin' }),
    );
    const clas: Res[] = Array.from({ length: N_CLUSTERS }, (_, i) => loadAssignment(name(i), endpoints(i)));
    const listeners: Res[] = Array.from({ length: N_LISTENERS }, (_, i) =>
      tcpListener(vip(i), 8080, name(i % N_CLUSTERS)),
    );
    const bytes = [...clusters, ...clas, ...listeners].reduce((n, r) => n + r.value.length, 0);

    // Full push. EDS is staged first (no one subscribes yet), then CDS and LDS go out back to back.
    server.set(TYPE.endpoint, clas);
    const cdsV = server.set(TYPE.cluster, clusters);
    const ldsV = server.set(TYPE.listener, listeners);
    const cds = await appliedOf('CDS', cdsV);
    await appliedOf('LDS', ldsV);
    const eds = await appliedOf('EDS', server.version(TYPE.endpoint));
    const fullMs = eds.doneAt - cds.arrivedAt;
    const l = pinnedEntries(pinDir, 'kmesh_listeners');
    const c = pinnedEntries(pinDir, 'kmesh_clusters');
    if (l !== N_LISTENERS || c !== N_CLUSTERS)
      throw new Error(`maps not consistent after the full push: ${l} listeners, ${c} clusters`);

    // One endpoint changed, N times each way.
    const n = Number(args.changes);
    const reconcileBefore = reconcileMs.length;
    const incremental: number[] = [];
    const sotw: number[] = [];
    for (let k = 1; k <= n; k++) {
      const i = (k * 37) % N_CLUSTERS;
      const next = clas.map((r, j) => (j === i ? loadAssignment(name(i), endpoints(i, k)) : r));
      clas.splice(0, clas.length, ...next);
      const v = server.set(TYPE.endpoint, clas, [name(i)]);
      incremental.push((await appliedOf('EDS', v)).ms);
    }
    // A full SotW resend has no delta counterpart (a delta server sends the changed resource only).
    for (let k = 1; k <= (DELTA ? 0 : n); k++) {
      const i = (k * 53) % N_CLUSTERS;
      clas[i] = loadAssignment(name(i), endpoints(i, 1000 + k));
      const v = server.set(TYPE.endpoint, clas);
      sotw.push((await appliedOf('EDS', v)).ms);
    }
    await new Promise((r) => setTimeout(r, 1500)); // let the reconciler's grace-period sweep run before RSS
    const mem = rssMB(child.pid as number);
    const changeReconcile = reconcileMs.slice(reconcileBefore, reconcileBefore + n);

    const result = {
      daemon: entry.kind,
      mode: args.mode,
      resources: {
        clusters: N_CLUSTERS,
        endpoints: N_CLUSTERS * N_ENDPOINTS,
        listeners: N_LISTENERS,
        encodedBytes: bytes,
      },
      fullPushMs: Number(fullMs.toFixed(1)),
      fullPushSteps: {
        cdsLdsBatchMs: Number(
          (
            Math.max(...applied.filter((a) => a.version === cdsV || a.version === ldsV).map((a) => a.doneAt)) -
            cds.arrivedAt
          ).toFixed(1),
        ),
        edsArrivalToMapsMs: Number(eds.ms.toFixed(1)),
      },
      oneChangeIncrementalMs: { median: median(incremental), max: Math.max(...incremental) },
      oneChangeFullSotwMs: { median: median(sotw), max: Math.max(...sotw) },
      /** Of the incremental change, the daemon's reconcile (merge excluded) as it logs it. */
      oneChangeReconcileMs: { median: Number(median(changeReconcile).toFixed(2)) },
      rssBeforePushMB: Number(memBefore.rss.toFixed(1)),
      rssMB: Number(mem.rss.toFixed(1)),
      peakRssMB: Number(mem.hwm.toFixed(1)),
      floors: FLOORS,
    };
    const pass = {
      fullPush: result.fullPushMs <= FLOORS.fullPushMs,
      oneChange: result.oneChangeIncrementalMs.median <= FLOORS.oneChangeMs,
      rss: result.rssMB <= FLOORS.rssMB,
    };
    process.stdout.write(`${JSON.stringify({ ...result, pass }, null, 2)}\n`);
    process.stdout.write(
      [
        '',
        `| metric | value | floor |`,
        `|---|---|---|`,
        `| full push (1,000 clusters × 10 endpoints + 1,000 listeners) | ${result.fullPushMs} ms | ≤ ${FLOORS.fullPushMs} ms ${pass.fullPush ? 'ok' : 'MISSED'} |`,
        `| one endpoint change (${DELTA ? 'delta' : 'incremental EDS'}), median / max | ${result.oneChangeIncrementalMs.median} / ${result.oneChangeIncrementalMs.max} ms | ≤ ${FLOORS.oneChangeMs} ms ${pass.oneChange ? 'ok' : 'MISSED'} |`,
        ...(DELTA
          ? []
          : [
              `| one endpoint change (full SotW EDS resend), median / max | ${result.oneChangeFullSotwMs.median} / ${result.oneChangeFullSotwMs.max} ms | — |`,
            ]),
        `| daemon RSS after (peak) | ${result.rssMB} MB (${result.peakRssMB} MB) | ≤ ${FLOORS.rssMB} MB ${pass.rss ? 'ok' : 'MISSED'} |`,
        '',
      ].join('\n'),
    );
    if (args.json) writeFileSync(args.json, JSON.stringify({ ...result, pass }, null, 2));
    if (args.strict && !(pass.fullPush && pass.oneChange && pass.rss)) process.exitCode = 3;
  } finally {
    await stopChild(child);
    cleanupPins(pinDir);
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
