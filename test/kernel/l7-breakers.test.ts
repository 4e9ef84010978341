/**
 * The daemon's own connects at L7 and the L7 circuit breakers, on the real kernel: a pool that cannot
 * connect to an endpoint gets it ejected by the kernel's outlier rule (and backs off instead of spinning);
 * max_requests and max_pending_requests answer a clean 503 with x-envoy-overloaded at once, counted as the
 * cluster's overflows; a slow-path connect past the cluster's connect_timeout counts as a connect timeout.
 * Addresses 127.63.0.x, ports 31700-31799.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { MeshModel, OutlierDetection } from '../../src/model/types.js';
import { cluster, ep, listener, route, vhost } from '../support/model-builders.js';
import { synBlackhole } from './support/faulty-peers.js';
import { type L7Mesh, startL7Mesh } from './support/http-mesh.js';
import { runIn } from './support/http-peers.js';
import type { Backends } from './support/peers.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'support', 'http-client.js');
const VIP = '127.63.0.1';
const HOST = '127.63.0.2';
const BLACKHOLE = '127.63.0.3';
const PORT = 31700;
const LIVE = 31701;
/** Nothing listens here: every connect is refused. */
const DEAD = 31702;
const HOLE = 31703;
const CONNECT_TIMEOUT_MS = 1000;
const OD: OutlierDetection = {
  consecutiveFailures: 3,
  baseEjectionTimeMs: 60_000,
  maxEjectionTimeMs: 60_000,
  maxEjectionPercent: 50,
  intervalMs: 60_000,
};

function model(): MeshModel {
  const web = listener('cb-web', VIP, PORT, [['pf', 1]], 'http');
  const prefix = (p: string) => ({ path: { kind: 'prefix' as const, value: p } });
  web.virtualHosts = [
    vhost(
      'web',
      ['*'],
      [route('mr', prefix('/mr'), 'mr'), route('pend', prefix('/pend'), 'pend'), route('pf', {}, 'pf')],
    ),
  ];
  return {
    clusters: [
      // only the daemon's pool ever connects to the dead endpoint: no application connect fails at L4
      cluster('pf', [ep(HOST, LIVE), ep(HOST, DEAD)], { outlierDetection: OD }),
      cluster('mr', [ep(HOST, LIVE)], { maxRequests: 2 }),
      cluster('pend', [ep(BLACKHOLE, HOLE)], {
        maxPendingRequests: 1,
        connectTimeoutMs: CONNECT_TIMEOUT_MS,
        outlierDetection: { ...OD, consecutiveFailures: 1000 },
      }),
    ],
    listeners: [web],
  };
}

describe('L7: pool connect failures and circuit breakers', () => {
  let mesh: L7Mesh | undefined;
  let hole: Backends | undefined;

  async function client(mode: string, opts: object): Promise<unknown> {
    const r = await runIn((mesh as L7Mesh).cg.path, process.execPath, [CLIENT, mode, JSON.stringify(opts)], 30_000);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  }
  const l7 = async () => (await (mesh as L7Mesh).td.daemon.l7Ready())?.counters() ?? {};
  const overflows = (name: string) =>
    mesh?.td.daemon.clusterCounters().find((c) => c.cluster === name)?.overflowsTotal ?? 0;

  before(async () => {
    hole = await synBlackhole(BLACKHOLE, HOLE);
    mesh = await startL7Mesh('l7cb', [{ name: 'live', port: LIVE }], HOST, model());
  });

  after(async () => {
    await mesh?.close();
    await hole?.close();
  });

  test('a pool that cannot connect gets its endpoint ejected by the kernel, backs off, and no request fails', async () => {
    const dead = () => mesh?.td.daemon.endpointStatus('pf').find((e) => e.port === DEAD);
    for (let i = 0; i < 30 && dead()?.healthy !== false; i++) await sleep(100);
    const status = dead();
    assert.equal(status?.healthy, false, `the refusing endpoint is ejected: ${JSON.stringify(status)}`);
    assert.ok((status?.failuresTotal ?? 0) >= OD.consecutiveFailures, JSON.stringify(status));
    assert.ok((await l7()).pool_connect_failures >= OD.consecutiveFailures);

    const tally = (await client('many', {
      url: `http://${VIP}:${PORT}`,
      path: '/',
      count: 40,
      concurrency: 4,
    })) as Record<string, number>;
    assert.deepEqual(tally, { live: 40 }, 'every request went to the live endpoint');

    // back-off: one probe connect at a time, spaced out (no spinning on a dead endpoint)
    const before = dead()?.failuresTotal ?? 0;
    await sleep(2000);
    const more = (dead()?.failuresTotal ?? 0) - before;
    assert.ok(more <= 4, `${more} failed connects in 2 s`);
  });

  test('max_requests: over the limit a 503 with x-envoy-overloaded at once, an overflow; free again after a close', async () => {
    const overflowsBefore = overflows('mr');
    const r = (await client('breaker', {
      url: `http://${VIP}:${PORT}`,
      path: '/mr',
      hold: 2,
      gapMs: 300,
      retries: 20,
    })) as { held: string[]; over: string; overMs: number; after: string };
    assert.deepEqual(r.held, ['200', '200'], JSON.stringify(r));
    assert.equal(r.over, '503 overloaded', JSON.stringify(r));
    assert.ok(r.overMs < 1000, `answered in ${r.overMs} ms`);
    assert.equal(r.after, '200', `the closed connections freed their requests: ${JSON.stringify(r)}`);
    assert.equal(overflows('mr') - overflowsBefore, 1, 'counted as the cluster overflow');
    assert.ok((await l7()).overflow >= 1);
  });

  test('max_pending_requests: a second first request waiting on the slow path gets a 503 at once; the connect timeout counts', async () => {
    const r = (await client('breaker', {
      url: `http://${VIP}:${PORT}`,
      path: '/pend',
      hold: 1,
      gapMs: 300,
    })) as { held: string[]; over: string; overMs: number };
    assert.equal(r.over, '503 overloaded', JSON.stringify(r));
    assert.ok(r.overMs < 500, `answered in ${r.overMs} ms`);
    // the waiting one fails cleanly when the cluster's connect timeout passes: closed, no hang
    assert.match(r.held[0] ?? '', /^error:/, JSON.stringify(r));
    const counters = await l7();
    assert.equal(counters.slow_path_overflows, 1);
    assert.ok(overflows('pend') >= 1);
    const hole = mesh?.td.daemon.endpointStatus('pend')[0];
    assert.ok((hole?.connectTimeoutsTotal ?? 0) >= 1, `connect timeouts counted: ${JSON.stringify(hole)}`);
    assert.ok(counters.pool_connect_timeouts >= 1, JSON.stringify(counters));
  });
});
