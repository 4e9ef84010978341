/**
 * L7 routing on the real kernel: an http listener with virtual hosts, real clients (curl,
 * Node http with a keep-alive agent) in a test cgroup, real HTTP backends; the first
 * request of each connection is routed by the kernel onto a pre-connected upstream socket.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { registerL7Metrics } from '../../src/l7/metrics.js';
import type { MeshModel } from '../../src/model/types.js';
import { cluster, ep, header, listener, route, vhost } from '../support/model-builders.js';
import type { TestCgroup } from './support/cgroup.js';
import type { TestDaemon } from './support/daemon.js';
import { type L7Mesh, startL7Mesh } from './support/http-mesh.js';
import { type HttpBackends, run, runIn } from './support/http-peers.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'support', 'http-client.js');
const VIP = '127.45.0.1';
const PORT = 35080;
const WILD_PORT = 35081;
/** New connections of the leak test (KMESH_L7_SOAK=100000 for the long run, docs/l7.md). */
const SOAK = Number(process.env.KMESH_L7_SOAK ?? 10_000);
/** The backends, on our own address. */
const BACKEND = '127.45.0.2';

function model(): MeshModel {
  const web = listener('web', VIP, PORT, [['v1', 1]], 'http');
  web.virtualHosts = [
    vhost(
      'web',
      ['*'],
      [
        route('canary', { headers: [header('x-canary', { kind: 'exact', value: '1' })] }, 'v2'),
        route('v3-path', { path: { kind: 'separated_prefix', value: '/v3' } }, 'v3'),
        route('post', { method: 'POST' }, 'v3'),
        route('gray', { path: { kind: 'prefix', value: '/gray' } }, [
          ['v1', 90],
          ['v2', 10],
        ]),
        route('down', { headers: [header('x-down', { kind: 'present' })] }, 'down'),
        route('default', { path: { kind: 'prefix', value: '/' } }, 'v1'),
      ],
    ),
  ];
  // a wildcard listener: the Host header picks the virtual host (Envoy's order)
  const wild = listener('wild', '0.0.0.0', WILD_PORT, [['v1', 1]], 'http');
  wild.virtualHosts = [
    vhost('api', ['api.example.com'], [route('api', {}, 'v3')]),
    vhost('shop', ['*.example.com'], [route('shop', {}, 'v2')]),
    vhost('other', ['*'], [route('other', {}, 'v1')]),
  ];
  return {
    clusters: [
      cluster('v1', [ep(BACKEND, 35001)]),
      cluster('v2', [ep(BACKEND, 35002)]),
      cluster('v3', [ep(BACKEND, 35003)]),
      cluster('down', [ep(BACKEND, 35009)]),
    ],
    listeners: [web, wild],
  };
}

async function client(cg: TestCgroup, mode: string, opts: object, timeoutMs = 60_000): Promise<unknown> {
  const r = await runIn(cg.path, process.execPath, [CLIENT, mode, JSON.stringify(opts)], timeoutMs);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

const settle = (ms = 100) => new Promise((r) => setTimeout(r, ms));

const curl = (cg: TestCgroup, args: string[]) => runIn(cg.path, 'curl', ['-sS', '--max-time', '5', ...args]);

describe('L7 routing in the kernel', () => {
  let cg: TestCgroup;
  let td: TestDaemon;
  let backends: HttpBackends;
  let mesh: L7Mesh | undefined;

  before(async () => {
    mesh = await startL7Mesh(
      'l7',
      [
        { name: 'v1', port: 35001 },
        { name: 'v2', port: 35002 },
        { name: 'v3', port: 35003 },
      ],
      BACKEND,
      model(),
      (d) => assert.equal(d.daemon.l7, undefined, 'no L7 object is loaded before a listener has routes'),
    );
    ({ cg, td, backends } = mesh);
  });

  after(async () => {
    await mesh?.close();
  });

  test('curl: a header route, a path route, a method route and the default route', async () => {
    const canary = await curl(cg, ['-H', 'x-canary: 1', `http://${VIP}:${PORT}/x`]);
    assert.equal(canary.stdout, 'v2 GET /x\n', canary.stderr);
    const v3 = await curl(cg, [`http://${VIP}:${PORT}/v3/items?id=1`]);
    assert.equal(v3.stdout, 'v3 GET /v3/items?id=1\n', v3.stderr);
    const notV3 = await curl(cg, [`http://${VIP}:${PORT}/v3x`]);
    assert.equal(notV3.stdout, 'v1 GET /v3x\n', notV3.stderr);
    const post = await curl(cg, ['-d', 'hello', `http://${VIP}:${PORT}/p`]);
    assert.equal(post.stdout, 'v3 POST /p body=5\n', post.stderr);
    const plain = await curl(cg, [`http://${VIP}:${PORT}/`]);
    assert.equal(plain.stdout, 'v1 GET /\n', plain.stderr);
    const c = td.daemon.l7?.counters();
    assert.ok((c?.routed ?? 0) >= 5, JSON.stringify(c));
    assert.ok((c?.pool_hit ?? 0) >= 5, JSON.stringify(c));
  });

  test('Node keep-alive agent: the route is chosen by the first request and kept; a later request that would match another route is counted', async () => {
    const before = td.daemon.l7?.counters().later_mismatch ?? 0;
    const out = await client(cg, 'keepalive', {
      url: `http://${VIP}:${PORT}`,
      requests: [
        { path: '/a', headers: { 'x-canary': '1' } },
        { path: '/b' },
        { path: '/v3/c', headers: { 'x-canary': '1' } },
      ],
    });
    assert.deepEqual(out, ['v2 GET /a', 'v2 GET /b', 'v2 GET /v3/c']);
    // /b would take the default route, /v3/c the canary route again
    assert.equal((td.daemon.l7?.counters().later_mismatch ?? 0) - before, 1);
  });

  test('Host picks the virtual host on a wildcard listener: exact, *.suffix, then *', async () => {
    for (const [host, want] of [
      ['api.example.com', 'v3'],
      ['www.example.com', 'v2'],
      ['example.org', 'v1'],
    ]) {
      const r = await curl(cg, ['-H', `Host: ${host}`, `http://127.45.0.7:${WILD_PORT}/h`]);
      assert.equal(r.stdout, `${want} GET /h\n`, `${host}: ${r.stderr}`);
    }
  });

  test('a chunked request body split over sends reaches the route of its head whole', async () => {
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: [
        'POST /chunked HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
        '5\r\nhello\r\n',
        'A\r\n0123456789\r\n0\r\n\r\n',
      ],
    })) as { data: string; eof: boolean };
    assert.match(out.data, /v3 POST \/chunked body=15\n/, JSON.stringify(out));
    const curlChunked = await curl(cg, ['-H', 'Transfer-Encoding: chunked', '-d', 'hello', `http://${VIP}:${PORT}/c`]);
    assert.equal(curlChunked.stdout, 'v3 POST /c body=5\n', curlChunked.stderr);
  });

  test('wrk keep-alive load on a header route: every request answered, by the route chosen', async () => {
    const canary = () =>
      td.daemon.l7
        ?.routeStats()
        .find((s) => s.route?.route === 'canary' && td.daemon.applied.clusterNameOf(s.clusterId) === 'v2')
        ?.connections ?? 0;
    const before = canary();
    const r = await runIn(
      cg.path,
      'wrk',
      ['-t1', '-c8', '-d2s', '-H', 'x-canary: 1', `http://${VIP}:${PORT}/wrk`],
      30_000,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /Socket errors|Non-2xx/, r.stdout);
    const requests = Number(/(\d+) requests in/.exec(r.stdout)?.[1] ?? 0);
    assert.ok(requests > 100, r.stdout);
    // one routed connection per wrk connection, all on the canary route
    assert.equal(canary() - before, 8);
  });

  test('a request head split across two writes is routed on the whole head', async () => {
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: ['GET /split HTTP/1.1\r\nHost: web\r\n', 'x-canary: 1\r\nConnection: close\r\n\r\n'],
      gapMs: 100,
    })) as { data: string; eof: boolean };
    assert.match(out.data, /x-backend: v2\r\n[\s\S]*v2 GET \/split\n/, JSON.stringify(out));
    assert.ok(out.eof, 'the server closed: the client sees EOF');
  });

  test('a server that closes after answering: the client sees EOF', async () => {
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: ['GET /close HTTP/1.1\r\nHost: web\r\n\r\n'],
    })) as { data: string; eof: boolean; error?: string };
    assert.match(out.data, /v1 GET \/close/);
    assert.ok(out.eof, JSON.stringify(out));
  });

  test('a server that resets: the client is reset too, no hang', async () => {
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: ['GET /reset HTTP/1.1\r\nHost: web\r\n\r\n'],
    })) as { data: string; eof: boolean; error?: string };
    assert.equal(out.data, '');
    assert.ok(out.eof || out.error === 'read ECONNRESET', JSON.stringify(out));
  });

  test('not HTTP: the bytes go to the default route unparsed', async () => {
    const before = td.daemon.l7?.counters().not_http ?? 0;
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: ['\x16\x03\x01\x00\x05hello\r\n\r\n'],
    })) as { data: string };
    // the default route's backend (Node's http server) refuses the bytes itself
    assert.match(out.data, /^HTTP\/1\.1 400 Bad Request/);
    assert.equal((td.daemon.l7?.counters().not_http ?? 0) - before, 1);
  });

  test('a backend that is down: the client fails fast and cleanly', async () => {
    const started = Date.now();
    const r = await curl(cg, ['-H', 'x-down: yes', `http://${VIP}:${PORT}/`]);
    assert.notEqual(r.code, 0);
    assert.ok(Date.now() - started < 4000, `took ${Date.now() - started} ms`);
  });

  test('per-route weights 90/10 over 2000 new connections', async () => {
    const tally = (await client(
      cg,
      'many',
      { url: `http://${VIP}:${PORT}`, path: '/gray', count: 2000 },
      120_000,
    )) as Record<string, number>;
    assert.equal((tally.v1 ?? 0) + (tally.v2 ?? 0), 2000, JSON.stringify(tally));
    const share = (tally.v2 ?? 0) / 2000;
    // binomial sd at p = 0.1, n = 2000 is 0.0067: four of them
    assert.ok(Math.abs(share - 0.1) < 0.027, `v2 share ${share}`);
  });

  test(`${SOAK} new connections leak nothing: connection state, pools, daemon fds`, async () => {
    const l7 = td.daemon.l7;
    assert.ok(l7);
    await settle(300);
    const fds = () => readdirSync('/proc/self/fd').length;
    const fdsBefore = fds();
    const tally = (await client(
      cg,
      'many',
      { url: `http://${VIP}:${PORT}`, path: '/soak', count: SOAK, concurrency: 8 },
      SOAK * 30,
    )) as Record<string, number>;
    assert.deepEqual(tally, { v1: SOAK });
    await settle(500);
    assert.equal(l7.counters().open_pairs, 0);
    assert.equal([...l7.map('kmesh_l7_conns').keys()].length, 0, 'connection state left');
    assert.equal([...l7.map('kmesh_l7_peers').keys()].length, 0, 'peer entries left');
    // the daemon (in this process) holds the same sockets as before: its pools topped up, nothing else
    assert.ok(fds() <= fdsBefore + 4, `daemon fds ${fdsBefore} -> ${fds()}`);
    assert.ok(backends.open() <= 4 * 16, `backends hold ${backends.open()} sockets`);
  });

  test('a 10 MB response arrives whole', async () => {
    const r = await curl(cg, ['-o', '/dev/null', '-w', '%{size_download}', `http://${VIP}:${PORT}/big/10485760`]);
    assert.equal(r.stdout, '10485760', r.stderr);
  });

  test('pipelined requests in one write are all answered by the route of the first', async () => {
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: [
        'GET /p1 HTTP/1.1\r\nHost: web\r\nx-canary: 1\r\n\r\nGET /p2 HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n',
      ],
    })) as { data: string; eof: boolean };
    assert.match(out.data, /v2 GET \/p1[\s\S]*v2 GET \/p2/);
    assert.ok(out.eof);
  });

  test('a 16 KB header block: routed on the headers within the parse limit, no hang', async () => {
    const before = td.daemon.l7?.counters().truncated ?? 0;
    const pad = Array.from({ length: 160 }, (_, i) => `x-pad-${i}: ${'p'.repeat(90)}\r\n`).join('');
    const out = (await client(cg, 'raw', {
      host: VIP,
      port: PORT,
      chunks: [`GET /big-head HTTP/1.1\r\nHost: web\r\nx-canary: 1\r\n${pad}Connection: close\r\n\r\n`],
    })) as { data: string; eof: boolean };
    assert.match(out.data, /v2 GET \/big-head/);
    assert.equal((td.daemon.l7?.counters().truncated ?? 0) - before, 1);
  });

  test('an unregistered process is untouched', async () => {
    const r = await run('curl', ['-sS', '--max-time', '3', `http://${VIP}:${PORT}/`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Failed to connect|Connection refused|Couldn't connect/);
  });

  test('closes propagate: nothing of a finished connection stays open', async () => {
    await settle(300);
    const l7 = td.daemon.l7;
    assert.ok(l7);
    assert.equal(l7.counters().open_pairs, 0);
    // only the pools' idle sockets remain open at the backends
    const idle = backends.open();
    assert.ok(idle <= 3 * 16, `backends hold ${idle} sockets`);
    assert.equal([...l7.map('kmesh_l7_conns').keys()].length, 0, 'no connection state left');
    assert.equal([...l7.map('kmesh_l7_peers').keys()].length, 0, 'no peer entry left');
  });

  test('Prometheus: connections per route and destination cluster, first-request outcomes', async () => {
    const l7 = td.daemon.l7;
    assert.ok(l7);
    const registry = new Registry();
    registerL7Metrics(
      registry,
      () => l7,
      (id) => td.daemon.applied.clusterNameOf(id),
    );
    const text = await registry.metrics();
    assert.match(
      text,
      /kmesh_l7_routed_connections_total\{listener="web",virtual_host="web",route="canary",destination_cluster="v2"\} [1-9]/,
    );
    assert.match(text, /kmesh_l7_events_total\{event="not_http"\} [1-9]/);
    assert.match(text, /kmesh_l7_events_total\{event="pool_hit"\} [1-9]/);
  });

  test('without the daemon (no anchor), connect4 falls back to connect-time routing', async () => {
    await td.daemon.stop();
    const r = await curl(cg, ['-H', 'x-canary: 1', `http://${VIP}:${PORT}/after`]);
    // the listener's default route, chosen at connect time
    assert.equal(r.stdout, 'v1 GET /after\n', r.stderr);
  });
});
