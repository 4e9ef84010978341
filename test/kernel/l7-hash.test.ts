/**
 * Consistent hashing on an L7 key, on the real kernel: routes whose maglev / ring_hash cluster is picked by a
 * header's or a cookie's value (looked up in the cluster's kmesh_lb_table, the table the L4 path reads), with real
 * HTTP clients on new connections in a test cgroup.
 */
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Cluster, MeshModel, RouteHashPolicy } from '../../src/model/types.js';
import { cluster, ep, listener, route, vhost } from '../support/model-builders.js';
import type { TestCgroup } from './support/cgroup.js';
import type { TestDaemon } from './support/daemon.js';
import { type L7Mesh, startL7Mesh } from './support/http-mesh.js';
import { runIn } from './support/http-peers.js';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'support', 'http-client.js');
/** Our own addresses and ports. */
const VIP = '127.48.0.1';
const BACKEND = '127.48.0.2';
const PORT = 35180;
const BACKENDS = [35101, 35102, 35103, 35104].map((port, i) => ({ name: `b${i + 1}`, port }));

function hashed(path: string, c: string, hashPolicy: RouteHashPolicy) {
  return { ...route(path, { path: { kind: 'prefix' as const, value: path } }, c), hashPolicy };
}

/** `maglev` and `ring` over the given backends, `plain` round robin over all. */
function model(ports = BACKENDS.map((b) => b.port)): MeshModel {
  const eps = ports.map((p) => ep(BACKEND, p));
  const web = listener('hash-web', VIP, PORT, [['plain', 1]], 'http');
  web.virtualHosts = [
    vhost(
      'web',
      ['*'],
      [
        hashed('/user', 'maglev', { kind: 'header', name: 'x-user' }),
        hashed('/session', 'maglev', { kind: 'cookie', name: 'session' }),
        hashed('/ring', 'ring', { kind: 'header', name: 'x-user' }),
        route('default', {}, 'plain'),
      ],
    ),
  ];
  const clusters: Cluster[] = [
    cluster('maglev', eps, { lbPolicy: 'maglev' }),
    cluster('ring', eps, { lbPolicy: 'ring_hash' }),
    cluster(
      'plain',
      BACKENDS.map((b) => ep(BACKEND, b.port)),
    ),
  ];
  return { clusters, listeners: [web] };
}

describe('L7 consistent hashing on a header or cookie', () => {
  let cg: TestCgroup;
  let td: TestDaemon;
  let mesh: L7Mesh | undefined;

  /** The backends that answered each key's requests (`count` new connections per key). */
  async function keyed(path: string, keys: Array<Record<string, string>>, count = 1): Promise<string[][]> {
    const r = await runIn(
      cg.path,
      process.execPath,
      [CLIENT, 'keyed', JSON.stringify({ url: `http://${VIP}:${PORT}`, path, keys, count })],
      60_000,
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  }
  const users = (n: number, prefix = 'user') => Array.from({ length: n }, (_, i) => ({ 'x-user': `${prefix}-${i}` }));
  const counters = () => td.daemon.l7?.counters() ?? {};

  before(async () => {
    mesh = await startL7Mesh('l7hash', BACKENDS, BACKEND, model());
    ({ cg, td } = mesh);
  });

  after(async () => {
    await mesh?.close();
  });

  for (const [path, policy] of [
    ['/user', 'maglev'],
    ['/ring', 'ring_hash'],
  ] as const) {
    test(`${policy}: one header value, one endpoint over new connections; values spread over the endpoints`, async () => {
      const before = counters().hashed ?? 0;
      const seen = await keyed(path, users(16), 6);
      for (const [i, backendsOfKey] of seen.entries()) {
        assert.equal(new Set(backendsOfKey).size, 1, `user-${i}: ${backendsOfKey.join(' ')}`);
        assert.doesNotMatch(backendsOfKey[0] ?? '', /error/);
      }
      const spread = new Set(seen.map((s) => s[0]));
      assert.ok(spread.size >= 3, `16 keys on ${[...spread].join(', ')}`);
      assert.equal((counters().hashed ?? 0) - before, 16 * 6);
    });
  }

  test('cookie: the named cookie decides, wherever it is in the Cookie header; other cookies do not', async () => {
    const sessions = Array.from({ length: 12 }, (_, i) => `s${i}x`);
    const shapes = (s: string) => [
      { cookie: `session=${s}` },
      { cookie: `theme=dark; session=${s}` },
      { cookie: `a=1; session=${s}; b=${s}2` },
      // a cookie whose name only ends in "session" is another cookie
      { cookie: `xsession=zzz; session=${s}` },
    ];
    const seen = await keyed('/session', sessions.flatMap(shapes), 2);
    sessions.forEach((s, i) => {
      const all = seen.slice(i * 4, i * 4 + 4).flat();
      assert.equal(new Set(all).size, 1, `${s}: ${all.join(' ')}`);
    });
    assert.ok(new Set(seen.map((s) => s[0])).size >= 2, 'sessions spread over endpoints');
  });

  test('no key (header or cookie absent): the weighted pick, counted', async () => {
    const before = counters().hash_key_absent ?? 0;
    const seen = (await keyed('/user', [{}, { cookie: 'other=1' }], 24)).flat();
    assert.ok(new Set(seen).size >= 2, `without a key the endpoints are picked by weight: ${seen.join(' ')}`);
    assert.ok(!seen.some((b) => b.startsWith('error')), seen.join(' '));
    const cookieless = (await keyed('/session', [{ cookie: 'sessionx=1; a=2' }], 24)).flat();
    assert.ok(new Set(cookieless).size >= 2, cookieless.join(' '));
    assert.equal((counters().hash_key_absent ?? 0) - before, 72);
  });

  test('removing 1 of 4 endpoints moves only about 1/4 of the keys (maglev and ring hash)', async () => {
    const keys = users(120, 'move');
    const first = { maglev: (await keyed('/user', keys)).flat(), ring: (await keyed('/ring', keys)).flat() };
    await td.daemon.applyXds(model(BACKENDS.slice(0, 3).map((b) => b.port)));
    await new Promise((r) => setTimeout(r, 300));
    try {
      const next = { maglev: (await keyed('/user', keys)).flat(), ring: (await keyed('/ring', keys)).flat() };
      for (const policy of ['maglev', 'ring'] as const) {
        const [a, b] = [first[policy], next[policy]];
        const onRemoved = a.filter((x) => x === 'b4').length;
        const moved = a.filter((x, i) => x !== b[i]).length;
        assert.ok(!b.includes('b4'), `${policy}: nothing goes to the removed endpoint`);
        assert.ok(onRemoved > 10, `${policy}: ${onRemoved} of 120 keys were on b4`);
        // the removed endpoint's keys move, and at most a few others (maglev's table is not minimal-disruption)
        assert.ok(moved - onRemoved <= 6, `${policy}: ${moved} moved, ${onRemoved} of them from b4`);
      }
    } finally {
      await td.daemon.applyXds(model());
    }
  });
});
