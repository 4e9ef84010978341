/**
 * kmesh_ep_origin as the reconciler keeps it: one live TCP route per endpoint, kept while it routes there,
 * never a wildcard or UDP listener, gone with the last route, and the same after a restart.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { desiredState } from '../../src/controller/desired-state.js';
import { Reconciler } from '../../src/controller/reconciler.js';
import { decodeAddr } from '../../src/model/address.js';
import type { MeshModel } from '../../src/model/types.js';
import { epOriginKey, sockOrigin } from '../../src/runtime/maps/layouts.js';
import { memoryMaps } from '../support/memory-maps.js';
import { cluster, ep, listener } from '../support/model-builders.js';
import { wholeDelta } from '../support/whole-delta.js';

const logger = pino({ level: 'silent' });

/** endpoint "addr:port" → "vip:port/cluster id", as the map holds it. */
function view(maps: ReturnType<typeof memoryMaps>, model: MeshModel): Record<string, string> {
  const ids = desiredState(model).clusterIds;
  const nameOf = new Map([...ids].map(([name, id]) => [id, name]));
  const out: Record<string, string> = {};
  for (const [k, v] of maps.endpointOrigin.entries()) {
    const key = epOriginKey.decode(k);
    const o = sockOrigin.decode(v);
    assert.deepEqual([decodeAddr(o.endpoint), o.endpoint_port], [decodeAddr(key.addr), key.port]);
    out[`${decodeAddr(key.addr)}:${key.port}`] = `${decodeAddr(o.vip)}:${o.vip_port}/${nameOf.get(o.cluster_id)}`;
  }
  return out;
}

const FIRST: MeshModel = {
  clusters: [
    cluster('web', [ep('127.0.0.1', 1), ep('127.0.0.2', 2)]),
    cluster('api', [ep('127.0.0.2', 2), ep('127.0.0.3', 3)]),
    cluster('dns', [ep('127.0.0.4', 53)]),
    cluster('any', [ep('127.0.0.5', 5)]),
  ],
  listeners: [
    listener('web', '127.42.0.1', 32001, [['web', 1]]),
    listener('dns', '127.42.0.4', 53, [['dns', 1]], 'udp'),
    listener('any', '0.0.0.0', 32005, [['any', 1]]),
  ],
};

// api gets a VIP: 127.0.0.2 is reached twice now, its entry stays web's.
const PLUS_API: MeshModel = {
  ...FIRST,
  listeners: [...FIRST.listeners, listener('api', '127.42.0.2', 32002, [['api', 1]])],
};

// and web's VIP routes to api instead: web's routes go, 127.0.0.1 with them.
const SECOND: MeshModel = {
  ...FIRST,
  listeners: [
    listener('api', '127.42.0.2', 32002, [['api', 1]]),
    listener('web', '127.42.0.1', 32001, [['api', 1]]),
    listener('dns', '127.42.0.4', 53, [['dns', 1]], 'udp'),
    listener('any', '0.0.0.0', 32005, [['any', 1]]),
  ],
};

test('kmesh_ep_origin: one live TCP route per endpoint, kept while it routes there', async () => {
  const maps = memoryMaps();
  const reconciler = new Reconciler(maps, logger, 0);
  reconciler.adopt();
  await reconciler.apply(wholeDelta(FIRST, reconciler.liveKeys()));
  // no entry for the UDP endpoint nor for the one only a wildcard listener reaches
  assert.deepEqual(view(maps, FIRST), {
    '127.0.0.1:1': '127.42.0.1:32001/web',
    '127.0.0.2:2': '127.42.0.1:32001/web',
  });

  await reconciler.apply(wholeDelta(PLUS_API, reconciler.liveKeys()));
  assert.deepEqual(view(maps, PLUS_API), {
    '127.0.0.1:1': '127.42.0.1:32001/web',
    '127.0.0.2:2': '127.42.0.1:32001/web',
    '127.0.0.3:3': '127.42.0.2:32002/api',
  });

  await reconciler.apply(wholeDelta(SECOND, reconciler.liveKeys()));
  const second = view(maps, SECOND);
  // web's VIP now routes to api: 127.0.0.2 changes owner (web's route to it is gone), 127.0.0.3 gets one
  assert.equal(second['127.0.0.1:1'], undefined, 'no route to it: no entry');
  assert.match(second['127.0.0.2:2'] ?? '', /^127\.42\.0\.[12]:3200[12]\/api$/);
  assert.match(second['127.0.0.3:3'] ?? '', /^127\.42\.0\.[12]:3200[12]\/api$/);
  assert.equal(Object.keys(second).length, 2);

  // a restarted daemon keeps the entries it finds (their owners still route there) and writes the same
  const restarted = new Reconciler(maps, logger, 0);
  restarted.adopt();
  assert.deepEqual(view(maps, SECOND), second);
  await restarted.apply(wholeDelta(FIRST, restarted.liveKeys()));
  assert.deepEqual(view(maps, FIRST), {
    '127.0.0.1:1': '127.42.0.1:32001/web',
    '127.0.0.2:2': '127.42.0.1:32001/web',
  });
  await reconciler.flush();
  await restarted.flush();
});

// Many VIPs on one big cluster: one owner for all, and when it goes every entry moves to one remaining route.
// (The index keeps one owner per endpoint, not a candidate per route and endpoint: 10,000 VIPs on 100,000
// endpoints, test/kernel/capacity.test.ts, ran a daemon out of memory that way.)
test('kmesh_ep_origin: many routes to one big cluster, the owner removed', async () => {
  const endpoints = Array.from({ length: 5_000 }, (_, i) => ep(`127.1.${i >> 8}.${i & 255}`, 8080));
  const vips = (n: number) =>
    Array.from({ length: n }, (_, i) => listener(`v${i}`, `127.43.${i >> 8}.${i & 255}`, 32000, [['big', 1]]));
  const model = (n: number): MeshModel => ({ clusters: [cluster('big', endpoints)], listeners: vips(n) });
  const maps = memoryMaps();
  const reconciler = new Reconciler(maps, logger, 0);
  reconciler.adopt();
  await reconciler.apply(wholeDelta(model(2_000), reconciler.liveKeys()));
  const first = view(maps, model(2_000));
  assert.equal(Object.keys(first).length, 5_000);
  const owner = new Set(Object.values(first));
  assert.equal(owner.size, 1, 'every endpoint named by the same route');

  // the owner's VIP goes: every entry moves to one remaining route
  const rest = model(2_000);
  const gone = [...owner][0]?.split(':')[0];
  rest.listeners = rest.listeners.filter((l) => l.address !== gone);
  await reconciler.apply(wholeDelta(rest, reconciler.liveKeys()));
  const after = view(maps, rest);
  assert.equal(Object.keys(after).length, 5_000);
  assert.ok(!Object.values(after).some((o) => o.startsWith(`${gone}:`)));
  await reconciler.flush();
});

// The entries a listener owns are found by the listener's own version: one changed in place (same VIP and port)
// or adopted after a restart must still take its entries with it when it goes.
test('kmesh_ep_origin: a listener changed in place or adopted keeps its entries, and they go with it', async () => {
  const clusters = [cluster('web', [ep('127.0.0.1', 1), ep('127.0.0.2', 2)]), cluster('api', [ep('127.0.0.3', 3)])];
  const webOnly: MeshModel = { clusters, listeners: [listener('web', '127.42.0.1', 32001, [['web', 1]])] };
  const split: MeshModel = {
    clusters,
    listeners: [
      listener('web', '127.42.0.1', 32001, [
        ['web', 1],
        ['api', 1],
      ]),
    ],
  };
  const apiOnly: MeshModel = { clusters, listeners: [listener('api', '127.42.0.2', 32002, [['api', 1]])] };
  const maps = memoryMaps();
  let reconciler = new Reconciler(maps, logger, 0);
  reconciler.adopt();
  await reconciler.apply(wholeDelta(webOnly, reconciler.liveKeys()));
  await reconciler.apply(wholeDelta(split, reconciler.liveKeys()));
  const both = {
    '127.0.0.1:1': '127.42.0.1:32001/web',
    '127.0.0.2:2': '127.42.0.1:32001/web',
    '127.0.0.3:3': '127.42.0.1:32001/api',
  };
  assert.deepEqual(view(maps, split), both);
  await reconciler.apply(wholeDelta(apiOnly, reconciler.liveKeys()));
  assert.deepEqual(view(maps, apiOnly), { '127.0.0.3:3': '127.42.0.2:32002/api' });

  // again, the listener's version of the entries being a restarted daemon's adopted ones
  await reconciler.apply(wholeDelta(split, reconciler.liveKeys()));
  await reconciler.flush();
  reconciler = new Reconciler(maps, logger, 0);
  reconciler.adopt();
  assert.deepEqual(view(maps, split), both);
  await reconciler.apply(wholeDelta(apiOnly, reconciler.liveKeys()));
  assert.deepEqual(view(maps, apiOnly), { '127.0.0.3:3': '127.42.0.2:32002/api' });
  await reconciler.flush();
});
