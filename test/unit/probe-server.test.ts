/** The /metrics endpoint, daemon metrics, and promtool's opinion of the output. */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Agent, get } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { DaemonEvents, DaemonStatus } from '../../src/contracts/control.js';
import { KmeshError } from '../../src/contracts/errors.js';
import { ConnectionMetrics } from '../../src/probe/connection-metrics.js';
import { registerDaemonMetrics } from '../../src/probe/daemon-metrics.js';
import { NO_COUNTS } from '../../src/probe/kernel-state.js';
import { METRICS_LIMITS, parseListen, startMetricsServer } from '../../src/probe/server.js';

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

/** Opens `n` connections that send half a request line and then nothing (slowloris). */
async function slowSockets(port: number, n: number): Promise<{ open: () => number; destroy: () => void }> {
  const sockets: Socket[] = [];
  const open = new Set<Socket>();
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve) => {
          const s = connect(port, '127.0.0.1', () => {
            open.add(s);
            s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
            resolve();
          });
          s.on('error', () => {});
          s.resume(); // read the server's 408 and its close
          s.on('close', () => {
            open.delete(s);
            resolve();
          });
          sockets.push(s);
        }),
    ),
  );
  return {
    open: () => open.size,
    destroy: () => {
      for (const s of sockets) s.destroy();
    },
  };
}

const scrape = (port: number): Promise<{ status: number; body: string }> =>
  new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });

const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('the documented limits: 256 connections, 8 served at once, 5 s for a request head of at most 8 KiB', () => {
  assert.deepEqual(
    { ...METRICS_LIMITS },
    {
      maxConnections: 256,
      maxActive: 8,
      turnWithoutRequestMs: 100,
      headersTimeoutMs: 5_000,
      keepAliveTimeoutMs: 5_000,
      maxHeadBytes: 8_192,
      answerTimeoutMs: 10_000,
      checkIntervalMs: 1_000,
      fullGcAfterConnections: 100,
    },
  );
});

test('1,100 slow sockets: at most the cap stay open, the header timeout closes them, scrapes work after', async () => {
  const { registry } = await fixture();
  const limits = { ...METRICS_LIMITS, maxConnections: 64, headersTimeoutMs: 1500, checkIntervalMs: 100 };
  const server = await startMetricsServer('127.0.0.1:0', registry, silent, limits);
  const flood = await slowSockets(server.address.port, 1100);
  try {
    await settle(500);
    assert.ok(flood.open() <= 64, `${flood.open()} slow connections held open (cap 64)`);
    const started = Date.now();
    while (flood.open() > 0 && Date.now() - started < 5000) await settle(50);
    assert.equal(flood.open(), 0, 'the header timeout closes what the cap let in');
    const after = await scrape(server.address.port);
    assert.equal(after.status, 200);
  } finally {
    flood.destroy();
    await server.close();
  }
});

test('200 concurrent scrapes are answered from one read of the registry', async () => {
  const { registry } = await fixture();
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let reads = 0;
  const slow = {
    contentType: registry.contentType,
    metrics: async () => {
      reads++;
      await gate;
      return registry.metrics();
    },
  } as unknown as Registry;
  const server = await startMetricsServer('127.0.0.1:0', slow, silent);
  try {
    const scrapes = Promise.all(Array.from({ length: 200 }, () => scrape(server.address.port)));
    await settle(500); // every request is in, waiting on the one read
    release();
    const answers = await scrapes;
    assert.equal(reads, 1);
    assert.equal(server.collections, 1);
    assert.ok(answers.every((a) => a.status === 200 && a.body === answers[0]?.body && a.body.length > 0));
    // The next scrape reads again: coalescing never serves an old text.
    await scrape(server.address.port);
    assert.equal(reads, 2);
  } finally {
    await server.close();
  }
});

test('at most maxActive connections are read at once; one that waits past the header timeout is closed', async () => {
  const { registry } = await fixture();
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  const held = {
    contentType: registry.contentType,
    metrics: async () => {
      await gate;
      return registry.metrics();
    },
  } as unknown as Registry;
  const limits = { ...METRICS_LIMITS, maxActive: 4, headersTimeoutMs: 1000, checkIntervalMs: 100 };
  const server = await startMetricsServer('127.0.0.1:0', held, silent, limits);
  try {
    // The first 4 are read and wait on the held read; the other 16 wait for a turn that does not come in time.
    const scrapes = Array.from({ length: 20 }, () =>
      scrape(server.address.port).then(
        (a) => a.status,
        () => 0,
      ),
    );
    await settle(1500);
    release();
    const statuses = await Promise.all(scrapes);
    assert.equal(statuses.filter((s) => s === 200).length, 4, `statuses: ${statuses.join(' ')}`);
    assert.equal(statuses.filter((s) => s === 0).length, 16);
    assert.equal((await scrape(server.address.port)).status, 200, 'served again once the queue is gone');
  } finally {
    await server.close();
  }
});

test('slow sockets do not hold the turns: a scrape behind 40 of them is answered at once', async () => {
  const { registry } = await fixture();
  const limits = { ...METRICS_LIMITS, maxActive: 4 };
  const server = await startMetricsServer('127.0.0.1:0', registry, silent, limits);
  const flood = await slowSockets(server.address.port, 40);
  try {
    const started = Date.now();
    const { status } = await scrape(server.address.port);
    const waited = Date.now() - started;
    assert.equal(status, 200);
    // 40 slow sockets give up their turns 4 at a time after 100 ms each: ~1 s, far below the 5 s header timeout.
    assert.ok(waited < 2500, `the scrape waited ${waited} ms`);
    assert.equal(flood.open(), 40, 'the slow sockets are still open (the header timeout is theirs)');
  } finally {
    flood.destroy();
    await server.close();
  }
});

test('a second request on a kept-alive connection is not answered with a read older than it', async () => {
  const { registry } = await fixture();
  let reads = 0;
  const counting = {
    contentType: registry.contentType,
    metrics: () => {
      reads++;
      return registry.metrics();
    },
  } as unknown as Registry;
  const server = await startMetricsServer('127.0.0.1:0', counting, silent);
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const get1 = () =>
    new Promise<number>((resolve, reject) => {
      get({ host: '127.0.0.1', port: server.address.port, path: '/metrics', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
  // A slow socket holds a turn meanwhile, so the server is not idle and still has the first read.
  const flood = await slowSockets(server.address.port, 1);
  try {
    assert.equal(await get1(), 200);
    await settle(20);
    assert.equal(await get1(), 200);
    assert.equal(reads, 2);
  } finally {
    agent.destroy();
    flood.destroy();
    await server.close();
  }
});
