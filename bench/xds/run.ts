/**
 * xDS benchmark (issue 13, floors 3 and 5). A real daemon process (programs loaded, maps pinned under its own
 * bpffs directory, no cgroup attached, metrics on 127.0.0.1:32090) is driven by the in-repo ADS server. Times are
 * taken as the control plane sees them: from handing a response to the stream to receiving its ACK (the daemon
 * ACKs only once the maps hold the config).
 *   idle         RSS of a daemon with no config at all (no [xds], empty TOML)
 *   full push    N clusters × 10 endpoints + N listeners (N = 1,000 × --scale): CDS, EDS, LDS pushed at once;
 *                send → ACK of the EDS version (it includes the EDS subscription round trip); maps then checked
 *   one change   one endpoint of one cluster changed, pushed as istiod does (only that ClusterLoadAssignment),
 *                and as a full SotW EDS resend; send → ACK, N times each
 *   burst        100 EDS versions in one second (each a complete set of 10 assignments): how many applies the
 *                daemon made, time to the last version's ACK, that the maps hold the last version, RSS growth
 *   RSS          after the push and changes (once the grace period has passed), and 15 s later (settled)
 *   event loop   the daemon's own monitorEventLoopDelay maximum (its /metrics nodejs_eventloop_lag_max_seconds,
 *                reset at each scrape) during the push, the changes and the burst
 *   memory back  --scale 1 only: a config of 131,000 endpoints replaced by one of 3 endpoints: RSS before/after
 *
 * `--mode delta` runs the daemon with `[xds] mode = "delta"`: the same pushes then travel as incremental xDS (the
 * server sends only the changed resources), and "one change" times a delta one-endpoint change (a full SotW
 * resend has no delta counterpart and is skipped).
 *
 * Needs root. Usage: node dist/bench/xds/run.js [--json FILE] [--changes N] [--scale K] [--strict] [--mode sotw|delta]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { fnv1a32 } from '../../src/controller/cluster-ids.js';
import { readActiveSlot } from '../../src/controller/map-dump.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';
import { BpfMap } from '../../src/runtime/bpf-map.js';
import { clusterKey, clusterValue, endpointKey, endpointValue, listenerKey } from '../../src/runtime/maps/layouts.js';
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
    scale: { type: 'string', default: '1' },
    strict: { type: 'boolean' },
    mode: { type: 'string', default: 'sotw' },
  },
});
if (args.mode !== 'sotw' && args.mode !== 'delta') throw new Error('--mode must be sotw or delta');
const DELTA = args.mode === 'delta';
const SCALE = Number(args.scale);
const N_CLUSTERS = 1000 * SCALE;
const N_ENDPOINTS = 10;
const N_LISTENERS = 1000 * SCALE;
const METRICS = '127.0.0.1:32090';
const FLOORS = { fullPushMs: 200, oneChangeMedianMs: 5, oneChangeMaxMs: 20, rssMB: 64, idleRssMB: 50, loopDelayMs: 50 };
const DAEMON = join(root, 'dist', 'src', 'bin', 'kmesh-daemon.js');

const name = (i: number) => `outbound|8080||svc${i}.bench.svc.cluster.local`;
const vip = (i: number) => `127.20.${i >> 8}.${i & 255}`;
const endpoints = (i: number, bump = 0, count = N_ENDPOINTS): EpSpec[] =>
  Array.from({ length: count }, (_, j) => ({
    address: `127.1.${((i * count + j) >> 8) & 255}.${(i * count + j) & 255}`,
    port: 20000 + (j % 1000) + (j === 0 ? bump : 0),
    weight: 1 + (j % 3),
  }));

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;
const round = (x: number, digits = 1) => Number(x.toFixed(digits));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssMB(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rss: round(kb('VmRSS') / 1024), hwm: round(kb('VmHWM') / 1024) };
}

/** CPU time (user + system) a process used so far, in ms: unlike wall time it hardly moves with other load. */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15 of the line)
  return ticks * 10; // USER_HZ = 100 on Linux
}

/** The daemon's event-loop delay maximum since the last scrape (prom-client resets it on each collect), in ms. */
function loopDelayMaxMs(): Promise<number> {
  return new Promise((resolve, reject) => {
    get(`http://${METRICS}/metrics`, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve(round(Number(/^nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(body)?.[1]) * 1000)));
    }).on('error', reject);
  });
}

/** The pinned maps as the programs read them (active slot). */
function pinnedView(pinDir: string) {
  const open = (map: string) => BpfMap.openPinned(join(pinDir, 'maps', map));
  const maps = {
    listeners: open('kmesh_listeners'),
    clusters: open('kmesh_clusters'),
    endpoints: open('kmesh_endpoints'),
    activeSlot: open('kmesh_active_slot'),
  };
  const slot = readActiveSlot(maps);
  const close = () => {
    for (const m of Object.values(maps)) m.close();
  };
  return {
    close,
    listeners: () => [...maps.listeners.keys()].filter((k) => listenerKey.decode(k).slot === slot).length,
    clusters: () => [...maps.clusters.keys()].filter((k) => clusterKey.decode(k).slot === slot).length,
    /** Port of endpoint 0 of a cluster's live set. */
    firstPort: (clusterName: string) => {
      const value = maps.clusters.lookup(clusterKey.encode({ id: fnv1a32(clusterName), slot }));
      if (!value) return undefined;
      const { generation } = clusterValue.decode(value);
      const ep = maps.endpoints.lookup(endpointKey.encode({ cluster_id: fnv1a32(clusterName), generation, index: 0 }));
      return ep ? endpointValue.decode(ep).port : undefined;
    },
  };
}

interface Daemon {
  child: ChildProcess;
  applies: Array<{ type: string; version: string }>;
  /** The daemon's own time per apply (merge, validate, encode, map writes: "config applied" ms). */
  applyMs: number[];
  exited: Promise<never>;
  stop(): Promise<void>;
}

function startDaemon(toml: string, pinDir: string): Daemon {
  // BENCH_DAEMON_NODE_ARGS, e.g. "--heap-prof", to profile the daemon side (CPU profiling's signals make
  // program loading fail with EAGAIN).
  const nodeArgs = [...DAEMON_NODE_FLAGS, ...(process.env.BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter(Boolean)];
  const child = spawn(process.execPath, [...nodeArgs, DAEMON, '--config', toml, '--pin-dir', pinDir], {
    env: { ...process.env, ...DAEMON_ENV },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const applies: Daemon['applies'] = [];
  const applyMs: number[] = [];
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      const rec = JSON.parse(line);
      if (rec.msg === 'config applied') applyMs.push(Number(rec.ms));
      if (rec.msg === 'xds: applied') applies.push(rec);
      else if (rec.level >= 50) process.stderr.write(`daemon: ${line}\n`);
    } catch {
      /* not a log line */
    }
  });
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`daemon exited (${code})`))),
  );
  exited.catch(() => {}); // observed through the races below; must not crash the bench before its cleanup
  return {
    child,
    applies,
    applyMs,
    exited,
    stop: () => stopChild(child),
  };
}

/** RSS of a daemon with nothing to do: no [xds], no listeners. */
async function idleRss(tmp: string): Promise<{ rss: number; hwm: number }> {
  const pinDir = `/sys/fs/bpf/kmesh-bench-xds-idle-${process.pid}`;
  const toml = join(tmp, 'idle.toml');
  writeFileSync(toml, `[daemon]\nlog_level = "info"\npin_dir = "${pinDir}"\n`);
  const daemon = startDaemon(toml, pinDir);
  try {
    const ready = new Promise<void>((resolve) =>
      createInterface({ input: daemon.child.stdout as NodeJS.ReadableStream }).on('line', (l) => {
        if (l.includes('"kmesh-daemon ready"')) resolve();
      }),
    );
    await Promise.race([ready, daemon.exited]);
    await sleep(2000);
    return rssMB(daemon.child.pid as number);
  } finally {
    await daemon.stop();
    cleanupPins(pinDir);
  }
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'kmesh-bench-xds-'));
  const server = new XdsTestServer('b');
  const port = await server.start();
  const pinDir = `/sys/fs/bpf/kmesh-bench-xds-${process.pid}`;
  const toml = join(tmp, 'kmesh.toml');
  writeFileSync(
    toml,
    `[daemon]\nlog_level = "info"\npin_dir = "${pinDir}"\n\n[metrics]\nlisten = "${METRICS}"\n\n[xds]\naddress = "127.0.0.1:${port}"\nnode_id = "sidecar~127.0.0.1~bench.default~default.svc.cluster.local"\ninitial_backoff_ms = 100\nmode = "${args.mode}"\n`,
  );
  let daemon: Daemon | undefined;
  try {
    const idle = await idleRss(tmp);
    daemon = startDaemon(toml, pinDir);
    const d = daemon;
    /** Hands a change to the server and resolves with the ms until the daemon ACKs `version` of `typeUrl`. */
    const ackOf = async (typeUrl: string, push: () => string, timeoutMs = 60_000): Promise<number> => {
      const from = server.requests.length;
      const version = push();
      const sent = performance.now();
      await Promise.race([
        server.waitFor((r) => r.typeUrl === typeUrl && r.versionInfo === version && r.kind === 'ack', timeoutMs, from),
        d.exited,
      ]);
      return performance.now() - sent;
    };
    await Promise.race([server.waitFor((r) => r.typeUrl === TYPE.cluster, 30_000), d.exited]);
    await sleep(1000);
    const memBefore = rssMB(d.child.pid as number);

    // Resources are encoded before the clock starts: the bench times the daemon, not the fixture.
    const clusters: Res[] = Array.from({ length: N_CLUSTERS }, (_, i) =>
      cluster({ name: name(i), lbPolicy: 'round_robin' }),
    );
    const clas: Res[] = Array.from({ length: N_CLUSTERS }, (_, i) => loadAssignment(name(i), endpoints(i)));
    const listeners: Res[] = Array.from({ length: N_LISTENERS }, (_, i) =>
      tcpListener(vip(i), 8080, name(i % N_CLUSTERS)),
    );

    // Full push. EDS is staged first (no one subscribes yet), then CDS and LDS go out back to back; the push is
    // complete when the EDS version (asked for once CDS is applied) is ACKed.
    await loopDelayMaxMs();
    const appliesAtPush = d.applyMs.length;
    const pid = d.child.pid as number;
    const cpuAtPush = cpuMs(pid);
    server.set(TYPE.endpoint, clas);
    const fullPushMs = await ackOf(TYPE.endpoint, () => {
      server.set(TYPE.cluster, clusters);
      server.set(TYPE.listener, listeners);
      return server.version(TYPE.endpoint);
    });
    const pushLoopMs = await loopDelayMaxMs();
    const pushApplyMs = d.applyMs.slice(appliesAtPush).reduce((a, b) => a + b, 0);
    const pushCpuMs = cpuMs(pid) - cpuAtPush;
    await server.waitAck(TYPE.listener, 30_000);
    const view = pinnedView(pinDir);
    const counts = { listeners: view.listeners(), clusters: view.clusters() };
    view.close();
    if (counts.listeners !== N_LISTENERS || counts.clusters !== N_CLUSTERS)
      throw new Error(`maps not consistent after the full push: ${JSON.stringify(counts)}`);
    await sleep(1500); // the replay into the other slot, after the grace period, is not part of any change below

    // One endpoint changed, N times each way.
    const n = Number(args.changes);
    const appliesAtChanges = d.applyMs.length;
    const incremental: number[] = [];
    const sotw: number[] = [];
    const cpuAtChanges = cpuMs(pid);
    for (let k = 1; k <= n; k++) {
      const i = (k * 37) % N_CLUSTERS;
      clas[i] = loadAssignment(name(i), endpoints(i, k));
      incremental.push(await ackOf(TYPE.endpoint, () => server.set(TYPE.endpoint, clas, [name(i)])));
    }
    // A full SotW resend has no delta counterpart (a delta server sends the changed resource only).
    const incrementalCpuMs = (cpuMs(pid) - cpuAtChanges) / n;
    const cpuAtSotw = cpuMs(pid);
    for (let k = 1; k <= (DELTA ? 0 : n); k++) {
      const i = (k * 53) % N_CLUSTERS;
      clas[i] = loadAssignment(name(i), endpoints(i, 1000 + k));
      sotw.push(await ackOf(TYPE.endpoint, () => server.set(TYPE.endpoint, clas)));
    }
    const sotwCpuMs = DELTA ? undefined : (cpuMs(pid) - cpuAtSotw) / n;
    const changeLoopMs = await loopDelayMaxMs();
    const changeApplyMs = d.applyMs.slice(appliesAtChanges);

    // Burst: 100 versions within a second, each a complete set of the same 10 assignments.
    const burstNames = Array.from({ length: 10 }, (_, i) => name(i));
    const burstMemBefore = rssMB(d.child.pid as number);
    const appliesBefore = d.applies.length;
    const burstStart = performance.now();
    let lastVersion = '';
    for (let k = 1; k <= 100; k++) {
      const i = k % 10;
      clas[i] = loadAssignment(name(i), endpoints(i, 2000 + k));
      lastVersion = server.set(TYPE.endpoint, clas, burstNames);
      // paced to 100 in one second (no pause when the sender itself falls behind)
      await sleep(Math.max(0, burstStart + k * 10 - performance.now()));
    }
    const sentMs = performance.now() - burstStart;
    await Promise.race([
      server.waitFor((r) => r.typeUrl === TYPE.endpoint && r.versionInfo === lastVersion && r.kind === 'ack', 60_000),
      d.exited,
    ]);
    const burstMs = performance.now() - burstStart;
    const burstLoopMs = await loopDelayMaxMs();
    const burstView = pinnedView(pinDir);
    const wrong = burstNames.filter(
      (c, i) => burstView.firstPort(c) !== endpoints(i, 2000 + (i === 0 ? 100 : 90 + i))[0]?.port,
    );
    burstView.close();
    const burst = {
      versions: 100,
      sentInMs: round(sentMs),
      appliedEds: d.applies.slice(appliesBefore).filter((a) => a.type === 'EDS').length,
      lastAckAfterMs: round(burstMs),
      lastVersionLive: wrong.length === 0,
      rssGrowthMB: round(rssMB(d.child.pid as number).rss - burstMemBefore.rss),
    };

    await sleep(1500); // let the reconciler's grace-period sweep run before RSS
    const mem = rssMB(d.child.pid as number);
    // And once the daemon has been left alone: V8 shrinks its heap and malloc's free pages are trimmed (2, 6 and
    // 15 s after the last apply, docs/memory.md).
    await sleep(15_000);
    const settled = rssMB(d.child.pid as number);

    // Memory given back: 131,000 endpoints live, then a config of 3 (scale 1 only: the endpoint map holds 262,144).
    let memoryBack: { rssLargeMB: number; rssAfterReplaceMB: number; rssAfter10sMB: number } | undefined;
    if (SCALE === 1) {
      const big = Array.from({ length: N_CLUSTERS }, (_, i) => loadAssignment(name(i), endpoints(i, 0, 131)));
      await ackOf(TYPE.endpoint, () => server.set(TYPE.endpoint, big));
      await sleep(1500);
      const rssLarge = rssMB(d.child.pid as number).rss;
      await ackOf(TYPE.listener, () => server.set(TYPE.listener, [tcpListener(vip(0), 8080, name(0))]));
      await ackOf(TYPE.cluster, () => server.set(TYPE.cluster, [cluster({ name: name(0), lbPolicy: 'round_robin' })]));
      await ackOf(TYPE.endpoint, () => server.set(TYPE.endpoint, [loadAssignment(name(0), endpoints(0, 0, 3))]));
      await sleep(1500);
      const rssAfter = rssMB(d.child.pid as number).rss;
      await sleep(10_000);
      memoryBack = {
        rssLargeMB: rssLarge,
        rssAfterReplaceMB: rssAfter,
        rssAfter10sMB: rssMB(d.child.pid as number).rss,
      };
    }

    const result = {
      mode: args.mode,
      scale: SCALE,
      resources: { clusters: N_CLUSTERS, endpoints: N_CLUSTERS * N_ENDPOINTS, listeners: N_LISTENERS },
      fullPushMs: round(fullPushMs),
      oneChangeIncrementalMs: { median: round(median(incremental), 2), max: round(Math.max(...incremental), 2) },
      oneChangeFullSotwMs: DELTA ? undefined : { median: round(median(sotw), 2), max: round(Math.max(...sotw), 2) },
      eventLoopMaxMs: { push: pushLoopMs, changes: changeLoopMs, burst: burstLoopMs },
      /** The daemon's CPU time (user + system): for the push, and per change (a contention-robust cost). */
      daemonCpuMs: {
        push: pushCpuMs,
        perIncrementalChange: round(incrementalCpuMs, 2),
        perSotwChange: sotwCpuMs === undefined ? undefined : round(sotwCpuMs, 2),
      },
      /** Of those, the daemon's apply (merge, validate, encode, map writes), as it logs it. */
      daemonApplyMs: {
        push: round(pushApplyMs),
        oneChangeMedian: round(median(changeApplyMs), 2),
        oneChangeMax: round(Math.max(...changeApplyMs), 2),
      },
      burst,
      rssIdleNoConfigMB: idle.rss,
      rssBeforePushMB: memBefore.rss,
      rssMB: mem.rss,
      rssSettledMB: settled.rss,
      peakRssMB: mem.hwm,
      memoryBack,
      floors: FLOORS,
    };
    const pass = {
      fullPush: result.fullPushMs <= FLOORS.fullPushMs,
      oneChange:
        result.oneChangeIncrementalMs.median <= FLOORS.oneChangeMedianMs &&
        result.oneChangeIncrementalMs.max <= FLOORS.oneChangeMaxMs &&
        (result.oneChangeFullSotwMs === undefined ||
          (result.oneChangeFullSotwMs.median <= FLOORS.oneChangeMedianMs &&
            result.oneChangeFullSotwMs.max <= FLOORS.oneChangeMaxMs)),
      rss: result.rssMB <= FLOORS.rssMB,
      idleRss: result.rssIdleNoConfigMB <= FLOORS.idleRssMB,
      eventLoop: Math.max(pushLoopMs, changeLoopMs, burstLoopMs) <= FLOORS.loopDelayMs,
      // Coalesced or kept up with: never more applies than versions, the last one live, no growth.
      burst: burst.lastVersionLive && burst.appliedEds <= burst.versions && burst.rssGrowthMB < 5,
    };
    const ok = (x: boolean) => (x ? 'ok' : 'MISSED');
    process.stdout.write(`${JSON.stringify({ ...result, pass }, null, 2)}\n`);
    process.stdout.write(
      [
        '',
        `| metric (scale ${SCALE}: ${N_CLUSTERS} clusters × ${N_ENDPOINTS} endpoints + ${N_LISTENERS} listeners) | value | floor |`,
        '|---|---|---|',
        `| full push, send → EDS ACK | ${result.fullPushMs} ms | ≤ ${FLOORS.fullPushMs} ms ${ok(pass.fullPush)} |`,
        `| one endpoint change (${DELTA ? 'delta' : 'incremental EDS'}), send → ACK, median / max | ${result.oneChangeIncrementalMs.median} / ${result.oneChangeIncrementalMs.max} ms | ≤ ${FLOORS.oneChangeMedianMs} / ${FLOORS.oneChangeMaxMs} ms ${ok(pass.oneChange)} |`,
        ...(result.oneChangeFullSotwMs
          ? [
              `| one endpoint change (full SotW EDS resend), send → ACK, median / max | ${result.oneChangeFullSotwMs.median} / ${result.oneChangeFullSotwMs.max} ms | same |`,
            ]
          : []),
        `| of those, the daemon's apply (merge, validate, encode, map writes): push / one change median / max | ${result.daemonApplyMs.push} / ${result.daemonApplyMs.oneChangeMedian} / ${result.daemonApplyMs.oneChangeMax} ms | — |`,
        `| daemon CPU time (user + system): push / per ${DELTA ? 'delta' : 'incremental'} change${DELTA ? '' : ' / per SotW resend'} | ${result.daemonCpuMs.push} / ${result.daemonCpuMs.perIncrementalChange}${DELTA ? '' : ` / ${result.daemonCpuMs.perSotwChange}`} ms | — |`,
        `| event-loop delay max: push / changes / burst | ${pushLoopMs} / ${changeLoopMs} / ${burstLoopMs} ms | ≤ ${FLOORS.loopDelayMs} ms ${ok(pass.eventLoop)} |`,
        `| burst: 100 versions sent in ${burst.sentInMs} ms | ${burst.appliedEds} applies, last ACK after ${burst.lastAckAfterMs} ms, last version live: ${burst.lastVersionLive}, RSS ${burst.rssGrowthMB >= 0 ? '+' : ''}${burst.rssGrowthMB} MB | last state, no growth ${ok(pass.burst)} |`,
        `| daemon RSS idle, no config | ${result.rssIdleNoConfigMB} MB | ≤ ${FLOORS.idleRssMB} MB ${ok(pass.idleRss)} |`,
        `| daemon RSS with [xds], before the push | ${result.rssBeforePushMB} MB | — |`,
        `| daemon RSS after push and changes (peak) | ${result.rssMB} MB (${result.peakRssMB} MB) | ≤ ${FLOORS.rssMB} MB ${ok(pass.rss)} |`,
        `| daemon RSS 16.5 s after the last change | ${result.rssSettledMB} MB | — |`,
        ...(memoryBack
          ? [
              `| RSS with 131,000 endpoints → replaced by 3 (1.5 s / 11.5 s later) | ${memoryBack.rssLargeMB} → ${memoryBack.rssAfterReplaceMB} / ${memoryBack.rssAfter10sMB} MB | — |`,
            ]
          : []),
        '',
      ].join('\n'),
    );
    if (args.json) writeFileSync(args.json, JSON.stringify({ ...result, pass }, null, 2));
    if (args.strict && !Object.values(pass).every(Boolean)) process.exitCode = 3;
  } finally {
    await daemon?.stop();
    cleanupPins(pinDir);
    await server.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
