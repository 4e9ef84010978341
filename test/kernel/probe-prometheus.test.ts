/**
 * A real Prometheus (Debian `prometheus`) scrapes the probe's /metrics and its query
 * API returns the connection series; promtool accepts the live output.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { registerDaemonMetrics } from '../../src/probe/daemon-metrics.js';
import { type MetricsServer, startMetricsServer } from '../../src/probe/server.js';
import { counterTotal, inCgroupScript, makeProbeRig, type ProbeRig, runChild, waitFor } from './probe-harness.js';

const havePrometheus = spawnSync('prometheus', ['--version']).status === 0;
const N = 7;

let rig: ProbeRig;
let metrics: MetricsServer;
let prom: ChildProcess | undefined;
let promDir: string;
let promPort: number;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

before(async () => {
  if (!havePrometheus) return;
  rig = makeProbeRig('prom');
  const control = Object.assign(new EventEmitter(), {
    status: () => ({ version: 'test', state: 'running', configVersion: 1, xdsConnected: false }),
  });
  registerDaemonMetrics(rig.registry, {
    control: control as never,
    maps: () => Object.values(rig.maps).map((m) => ({ name: m.name, entries: 0, capacity: m.maxEntries })),
    programs: () => [{ name: rig.program.name, fd: rig.program.fd }],
  });
  metrics = await startMetricsServer('127.0.0.1:0', rig.registry, pino({ level: 'silent' }));
  promDir = mkdtempSync(join(tmpdir(), 'kmesh-prom-'));
  promPort = await freePort();
  writeFileSync(
    join(promDir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: kmesh\n    static_configs:\n      - targets: ['127.0.0.1:${metrics.address.port}']\n`,
  );
  prom = spawn(
    'prometheus',
    [
      `--config.file=${join(promDir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(promDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: 'ignore' },
  );
});

after(async () => {
  if (prom?.pid && prom.exitCode === null) {
    const exited = new Promise((r) => prom?.once('exit', r));
    process.kill(prom.pid, 'SIGTERM');
    await exited;
  }
  await metrics?.close();
  rig?.close();
  if (promDir) rmSync(promDir, { recursive: true, force: true });
});

async function query(q: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`);
  const body = (await res.json()) as {
    status: string;
    data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  };
  assert.equal(body.status, 'success');
  return body.data.result;
}

test('Prometheus scrapes the probe and returns the connection series', {
  skip: !havePrometheus && 'prometheus not installed',
}, async () => {
  const body = `
const server = net.createServer((s) => { s.on('data', () => {}); s.on('end', () => s.end('bye')); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
for (let i = 0; i < ${N}; i++) await new Promise((resolve) => {
  const c = net.connect(server.address().port, '127.0.0.1', () => c.end('hello'));
  c.on('data', () => {}); c.on('close', resolve);
});
server.close();`;
  const res = await runChild(inCgroupScript(rig.cgroups.attached, body));
  assert.equal(res.code, 0, res.stderr);
  await waitFor(
    'closes counted',
    async () => (await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total')) >= N,
  );

  await waitFor(
    'Prometheus to have the series',
    async () => {
      try {
        const r = await query('kmesh_tcp_connections_closed_total');
        return r.length > 0 && Number(r[0]?.value[1]) === N;
      } catch {
        return false; // not up yet
      }
    },
    30_000,
  );
  const closed = await query('kmesh_tcp_connections_closed_total');
  assert.equal(closed[0]?.metric.source_workload, 'probe-test.service');
  assert.equal(closed[0]?.metric.reporter, 'source');
  const sent = await query('sum(kmesh_tcp_sent_bytes_total)');
  assert.equal(Number(sent[0]?.value[1]), N * 'hello'.length);
  const received = await query('sum(kmesh_tcp_received_bytes_total)');
  assert.equal(Number(received[0]?.value[1]), N * 'bye'.length);
  const up = await query('up{job="kmesh"}');
  assert.equal(up[0]?.value[1], '1');
  assert.ok((await query('kmesh_map_capacity{map="kmesh_probe_events"}')).length === 1);
  assert.ok((await query('kmesh_bpf_prog_runs_total{program="kmesh_probe_sockops"}')).length === 1);

  const text = await (await fetch(`http://127.0.0.1:${metrics.address.port}/metrics`)).text();
  assert.equal(execFileSync('promtool', ['check', 'metrics'], { input: text }).toString().trim(), '');
});
