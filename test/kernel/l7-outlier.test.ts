/**
 * Outlier ejection at L7, on the real kernel: an endpoint the kernel ejected (its L4 connects refused, counted by
 * the L4 sockops program) takes no new L7 connections, neither by the weighted pick nor by a header hash
 * (maglev), until its ejection time is up; and 5xx responses eject as connect failures do, a 2xx resetting the
 * count. Addresses 127.49.0.x, ports 31400-31499.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Cluster, MeshModel, OutlierDetection } from '../../src/model/types.js';
import { cluster, ep, listener, route, vhost } from '../support/model-builders.js';
import { type L7Mesh, startL7Mesh } from './support/http-mesh.js';
import { type HttpBackends, httpBackends, runIn } from './support/http-peers.js';
import { count, dialFrom } from './support/peers.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'support', 'http-client.js');
const VIP = '127.49.0.1';
const BACKEND = '127.49.0.2';
/** L4 listeners onto the same clusters: their refused connects eject. */
const L4_VIP = { web: '127.49.0.3', mag: '127.49.0.4' } as const;
const PORT = 31480;
const BACKENDS = [31401, 31402].map((port, i) => ({ name: `b${i + 1}`, port }));
const EJECT_MS = 3000;
/** At most one of the two endpoints ejected at a time: the other keeps failing but stays in. */
const OD: OutlierDetection = {
  consecutiveFailures: 3,
  baseEjectionTimeMs: EJECT_MS,
  maxEjectionTimeMs: EJECT_MS,
  maxEjectionPercent: 50,
  intervalMs: 10_000,
};

function model(): MeshModel {
  const eps = BACKENDS.map((b) => ep(BACKEND, b.port));
  const web = listener('od-web', VIP, PORT, [['web', 1]], 'http');
  web.virtualHosts = [
    vhost(
      'web',
      ['*'],
      [
        {
          ...route('/user', { path: { kind: 'prefix' as const, value: '/user' } }, 'mag'),
          hashPolicy: { kind: 'header', name: 'x-user' },
        },
        {
          ...route('/five', { path: { kind: 'prefix' as const, value: '/five' } }, 'five'),
          hashPolicy: { kind: 'header', name: 'x-user' },
        },
        route('default', {}, 'web'),
      ],
    ),
  ];
  const clusters: Cluster[] = [
    cluster('web', eps, { outlierDetection: OD }),
    cluster('mag', eps, { lbPolicy: 'maglev', outlierDetection: OD }),
    // only L7 uses it: its endpoints' outlier state starts with their first response
    cluster('five', eps, { lbPolicy: 'maglev', outlierDetection: OD }),
  ];
  return {
    clusters,
    listeners: [
      web,
      listener('od-web-l4', L4_VIP.web, PORT, [['web', 1]]),
      listener('od-mag-l4', L4_VIP.mag, PORT, [['mag', 1]]),
    ],
  };
}

describe('L7 picks honour outlier ejection', () => {
  let mesh: L7Mesh | undefined;
  let backends: HttpBackends | undefined;
  /** Backend name of the endpoint each cluster's kernel ejected. */
  const ejected: Record<string, string> = {};
  /** Before the first and after the last ejecting connect. */
  let ejecting = 0;
  let ejectedBy = 0;

  async function client(mode: string, opts: object): Promise<unknown> {
    const r = await runIn((mesh as L7Mesh).cg.path, process.execPath, [CLIENT, mode, JSON.stringify(opts)], 30_000);
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  }
  const many = (n: number) =>
    client('many', { url: `http://${VIP}:${PORT}`, count: n }) as Promise<Record<string, number>>;
  const keys = Array.from({ length: 16 }, (_, i) => ({ 'x-user': `od-${i}` }));
  const keyed = async (path = '/user', keySet = keys) =>
    ((await client('keyed', { url: `http://${VIP}:${PORT}`, path, keys: keySet, count: 1 })) as string[][]).flat();

  before(async () => {
    // no backend listens yet: every connect through the L4 listeners is refused
    mesh = await startL7Mesh('l7od', [], BACKEND, model());
    ejecting = Date.now();
    for (const c of ['web', 'mag'] as const) {
      const tally = count(await dialFrom(mesh.cg.path, 'tcp', L4_VIP[c], PORT, 8));
      assert.equal(tally.get('error:ECONNREFUSED'), 8, JSON.stringify([...tally]));
      const status = mesh.td.daemon.endpointStatus(c);
      const out = status.filter((e) => !e.healthy);
      assert.equal(out.length, 1, `${c}: one endpoint ejected (${JSON.stringify(status)})`);
      ejected[c] = BACKENDS.find((b) => b.port === out[0]?.port)?.name ?? '';
    }
    ejectedBy = Date.now();
    backends = await httpBackends(BACKENDS, BACKEND);
    // the daemon's pools connect to both now
    await sleep(500);
  });

  after(async () => {
    await mesh?.close();
    await backends?.close();
  });

  test('while ejected: no new L7 connection reaches it (weighted and hashed picks); back after the ejection time', async () => {
    const weighted = await many(30);
    assert.equal(weighted[ejected.web as string], undefined, `web: ${JSON.stringify(weighted)}`);
    assert.equal(
      Object.values(weighted).reduce((a, b) => a + b, 0),
      weighted[ejected.web === 'b1' ? 'b2' : 'b1'],
    );
    const hashed = await keyed();
    assert.ok(!hashed.includes(ejected.mag as string), `mag: ${hashed.join(' ')}`);
    assert.ok(!hashed.some((b) => b.startsWith('error')), hashed.join(' '));
    assert.ok(Date.now() - ejecting < EJECT_MS, 'the requests ran within the ejection time');

    // the kernel compares ejected_until with the clock: no daemon step brings it back
    await sleep(ejectedBy + EJECT_MS + 300 - Date.now());
    const back = await many(30);
    assert.ok((back[ejected.web as string] ?? 0) >= 5, `web after the ejection: ${JSON.stringify(back)}`);
    const rehashed = await keyed();
    assert.ok(rehashed.includes(ejected.mag as string), `mag after the ejection: ${rehashed.join(' ')}`);
  });

  test('5xx responses count: 3 in a row eject the endpoint, a 2xx in between resets the count; back after the ejection time', async () => {
    const state = (port: number) => mesh?.td.daemon.endpointStatus('five').find((e) => e.port === port);
    // a key the table gives b2
    const onB2 = keys[(await keyed('/five')).indexOf('b2')];
    assert.ok(onB2, 'some key hashes to b2');
    const ask = async (path: string) => (await keyed(path, [onB2]))[0];
    // the daemon's pool connects failed while no backend listened (they count too: l7-breakers.test.ts)
    const failedBefore = state(31402)?.failuresTotal ?? 0;
    for (const path of ['/five/fail-on/b2', '/five/fail-on/b2', '/five', '/five/fail-on/b2', '/five/fail-on/b2'])
      assert.equal(await ask(path), 'b2', path);
    assert.equal(state(31402)?.healthy, true, 'two 5xx after a 200: still in');
    assert.equal(state(31402)?.consecutiveFailures, 2);
    assert.equal((state(31402)?.failuresTotal ?? 0) - failedBefore, 4);
    const ejectedAt = Date.now();
    assert.equal(await ask('/five/fail-on/b2'), 'b2');
    assert.equal(state(31402)?.healthy, false, 'the third 5xx in a row ejects');
    assert.equal(await ask('/five'), 'b1', 'the key moves on to the next endpoint while b2 is ejected');
    await sleep(ejectedAt + EJECT_MS + 300 - Date.now());
    assert.equal(await ask('/five'), 'b2', 'back after the ejection time');
    assert.equal(state(31402)?.healthy, true);
  });
});
