/** The /metrics endpoint, daemon metrics, and promtool's opinion of the output. */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { DaemonEvents, DaemonStatus } from '../../src/contracts/control.js';
import { KmeshError } from '../../src/contracts/errors.js';
import { ConnectionMetrics } from '../../src/probe/connection-metrics.js';
import { registerDaemonMetrics } from '../../src/probe/daemon-metrics.js';
import { NO_COUNTS } from '../../src/probe/kernel-state.js';
import { parseListen, startMetricsServer } from '../../src/probe/server.js';

const silent = pino({ level: 'silent' });

test('parseListen accepts host:port, [v6]:port and :port', () => {
  assert.deepEqual(parseListen('0.0.0.0:15020'), { host: '0.0.0.0', port: 15020 });
  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('[::1]:9'), { host: '::1', port: 9 });
  assert.deepEqual(parseListen(':15020'), { host: '::', port: 15020 });
  for (const bad of ['15020', 'host', '1.2.3.4:99999', '[::1:5', '']) {
    assert.throws(() => parseListen(bad), KmeshError, bad);
  }
});

class FakeControl extends EventEmitter<DaemonEvents> {
  version = 3;
  status(): DaemonStatus {
    return {
      version: '0.1.0',
      state: 'running',
      configVersion: this.version,
      configPath: '/etc/kmesh/kmesh.toml',
      xdsConnected: true,
      services: 1,
      listeners: 2,
      clusters: 2,
      endpoints: 4,
      features: {},
      startedAt: new Date(0).toISOString(),
    };
  }
}

async function fixture(): Promise<{ registry: Registry; control: FakeControl }> {
  const registry = new Registry();
  const control = new FakeControl();
  registerDaemonMetrics(registry, {
    control,
    xds: () => ({ pushes: { Cluster: 4, Listener: 2 }, nacks: { Cluster: 1 } }),
    maps: () => [{ name: 'kmesh_listeners', entries: 2, capacity: 16384 }],
    programs: () => [],
    bpfStatsEnabled: () => false,
  });
  new ConnectionMetrics(
    registry,
    { workloadOfCgroup: () => undefined, listenerOf: () => undefined, clusterNameOf: () => undefined },
    {
      read: () => [],
      overflow: () => NO_COUNTS,
      capacity: 16384,
      remove: () => {},
      liveCgroups: () => new Set(),
    },
  );
  return { registry, control };
}

test('GET /metrics serves the registry; other paths 404', async () => {
  const { registry, control } = await fixture();
  control.emit('config-applied', 3);
  const server = await startMetricsServer('127.0.0.1:0', registry, silent);
  try {
    const base = `http://127.0.0.1:${server.address.port}`;
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    assert.match(text, /^kmesh_config_version 3$/m);
    assert.match(text, /^kmesh_config_applies_total 4$/m, '3 before the metrics existed + 1');
    assert.match(text, /^kmesh_xds_connected 1$/m);
    assert.match(text, /^kmesh_xds_pushes_total\{type="Cluster"\} 4$/m);
    assert.match(text, /^kmesh_xds_nacks_total\{type="Cluster"\} 1$/m);
    assert.match(text, /^kmesh_map_capacity\{map="kmesh_listeners"\} 16384$/m);
    assert.match(text, /^kmesh_daemon_info\{version="0.1.0",state="running"\} 1$/m);
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.match(text, /^# TYPE kmesh_tcp_connections_opened_total counter$/m);
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal((await fetch(`${base}/metrics`, { method: 'POST' })).status, 405);
  } finally {
    await server.close();
  }
});

test('a port in use is a clear start-up error', async () => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  try {
    await assert.rejects(
      startMetricsServer(`127.0.0.1:${port}`, new Registry(), silent),
      (err: Error) =>
        err instanceof KmeshError &&
        err.message ===
          `metrics: cannot listen on 127.0.0.1:${port}: the address is already in use (another kmesh-daemon or exporter?)`,
    );
  } finally {
    blocker.close();
  }
});

const havePromtool = spawnSync('promtool', ['--version']).status === 0;

test('promtool check metrics passes on the output', { skip: !havePromtool && 'promtool not installed' }, async () => {
  const { registry } = await fixture();
  const text = await registry.metrics();
  // promtool exits non-zero on format errors and on lint problems
  const out = execFileSync('promtool', ['check', 'metrics'], { input: text }).toString();
  assert.equal(out.trim(), '');
});
