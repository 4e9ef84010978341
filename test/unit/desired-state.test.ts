/** desiredState: the model as map entries, decoded back with the layouts the kernel reads. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fnv1a32 } from '../../src/controller/cluster-ids.js';
import { desiredState } from '../../src/controller/desired-state.js';
import type { MeshModel } from '../../src/model/types.js';
import { CLUSTER_UNIFORM_WEIGHTS, endpointValue, listenerKey, listenerValue } from '../../src/runtime/maps/layouts.js';
import { cluster, ep, listener } from '../support/model-builders.js';

const hex = (text: string) => Buffer.from(text.replace(/\s/g, ''), 'hex');
/** The encoded endpoint set, one buffer per endpoint. */
const split = (endpoints: Buffer) =>
  Array.from({ length: endpoints.length / endpointValue.size }, (_, i) =>
    endpoints.subarray(i * endpointValue.size, (i + 1) * endpointValue.size),
  );

describe('desiredState: clusters', () => {
  const model: MeshModel = {
    clusters: [
      cluster('weighted', [ep('127.0.0.1', 9081, 1), ep('127.0.0.2', 9082, 3), ep('fd00::1:2', 9083, 6)], {
        lbPolicy: 'random',
      }),
      cluster('uniform', [ep('127.0.0.1', 1, 5), ep('127.0.0.1', 2, 5)]),
      cluster('one', [ep('::1', 65535, 7)], { lbPolicy: 'least_request' }),
      cluster('mag', [ep('127.0.0.1', 1)], { lbPolicy: 'maglev' }),
      cluster('ring', [ep('127.0.0.1', 1)], { lbPolicy: 'ring_hash' }),
    ],
    listeners: [],
  };
  const state = desiredState(model);
  const byName = (name: string) => {
    const c = state.clusters.get(fnv1a32(name));
    assert.ok(c, `cluster ${name}`);
    return c;
  };

  test('ids come from the names', () => {
    assert.deepEqual([...state.clusterIds].sort(), model.clusters.map((c) => [c.name, fnv1a32(c.name)]).sort());
    assert.equal(state.clusters.size, 5);
    for (const [name, id] of state.clusterIds) {
      assert.equal(byName(name).id, id);
      assert.equal(byName(name).name, name);
    }
  });

  test('cumulative endpoint weights, in configured order', () => {
    const c = byName('weighted');
    assert.equal(c.totalWeight, 10);
    assert.equal(c.flags, 0);
    assert.deepEqual(
      split(c.endpoints).map((buf) => endpointValue.decode(buf)),
      [
        { addr: hex('00000000000000000000ffff 7f000001'), port: 9081, pad: 0, cum_weight: 1 },
        { addr: hex('00000000000000000000ffff 7f000002'), port: 9082, pad: 0, cum_weight: 4 },
        { addr: hex('fd00 0000 0000 0000 0000 0000 0001 0002'), port: 9083, pad: 0, cum_weight: 10 },
      ],
    );
    // port in host (little-endian) order at offset 16: 9081 = 0x2379
    assert.deepEqual([...(split(c.endpoints)[0] as Buffer).subarray(16, 20)], [0x79, 0x23, 0, 0]);
    assert.equal(c.endpoints.length, 3 * endpointValue.size);
  });

  test('UNIFORM flag only when all weights are equal', () => {
    assert.equal(byName('uniform').flags, CLUSTER_UNIFORM_WEIGHTS);
    assert.equal(byName('uniform').totalWeight, 10);
    assert.deepEqual(
      split(byName('uniform').endpoints).map((b) => endpointValue.decode(b).cum_weight),
      [5, 10],
    );
    assert.equal(byName('one').flags, CLUSTER_UNIFORM_WEIGHTS);
    assert.equal(byName('one').totalWeight, 7);
    assert.equal(byName('weighted').flags, 0);
  });

  test('lb policy codes', () => {
    assert.equal(byName('uniform').lbPolicy, 0);
    assert.equal(byName('weighted').lbPolicy, 1);
    assert.equal(byName('one').lbPolicy, 2);
    assert.equal(byName('mag').lbPolicy, 3);
    assert.equal(byName('ring').lbPolicy, 4);
  });

  test('a colliding name moves the later name (sorted) to the next id', () => {
    // c1170850 and c693596 collide under FNV-1a; c1170850 sorts first and keeps the hash.
    const moved = cluster('c693596', [ep('127.0.0.1', 1)]);
    const alone = desiredState({ clusters: [moved], listeners: [] });
    assert.equal(alone.clusterIds.get('c693596'), 1491248120);
    const both = desiredState({ clusters: [moved, cluster('c1170850', [ep('127.0.0.1', 2)])], listeners: [] });
    assert.equal(both.clusterIds.get('c693596'), 1491248121);
    assert.equal(both.clusters.get(1491248121)?.id, 1491248121);
    assert.equal(both.clusters.get(1491248121)?.name, 'c693596');
    assert.equal(both.clusters.get(1491248120)?.name, 'c1170850');
  });
});

describe('desiredState: listeners', () => {
  const model: MeshModel = {
    clusters: [cluster('v1', [ep('127.0.0.1', 9081)]), cluster('v2', [ep('127.0.0.1', 9082)])],
    listeners: [
      listener('gray', '127.10.0.3', 9080, [
        ['v1', 90],
        ['v2', 10],
      ]),
      listener('plain', '127.10.0.1', 9080, [['v2', 1]], 'http'),
      listener('dns', '127.10.0.1', 9080, [['v1', 1]], 'udp'),
      listener('six', 'fd00::5', 443, [['v1', 1]]),
      listener('wild', '0.0.0.0', 21030, [['v2', 1]]),
      listener('wild6', '::', 21030, [['v2', 1]]),
    ],
  };
  const state = desiredState(model);
  const entry = (name: string) => {
    const found = [...state.listeners.values()].find((l) => l.name === name);
    assert.ok(found, `listener ${name}`);
    return found;
  };
  const zeros = (n: number) => new Array<number>(n).fill(0);

  test('one entry per listener, keyed by the hex of its key', () => {
    assert.equal(state.listeners.size, 6);
    for (const [k, l] of state.listeners) assert.equal(k, l.key.toString('hex'));
  });

  test('weighted clusters 90/10: ids and cumulative weights', () => {
    const v = listenerValue.decode(entry('gray').value);
    assert.deepEqual(v, {
      cluster_count: 2,
      total_weight: 100,
      cluster_ids: [fnv1a32('v1'), fnv1a32('v2'), ...zeros(14)],
      cum_weights: [90, 100, ...zeros(14)],
    });
    assert.equal(entry('gray').value.length, listenerValue.size);
  });

  test('a plain cluster is one route of weight 1', () => {
    assert.deepEqual(listenerValue.decode(entry('plain').value), {
      cluster_count: 1,
      total_weight: 1,
      cluster_ids: [fnv1a32('v2'), ...zeros(15)],
      cum_weights: [1, ...zeros(15)],
    });
  });

  test('keys: v4 as ::ffff:a.b.c.d, protocol 6 for tcp and http, 17 for udp, port in host order', () => {
    assert.deepEqual(listenerKey.decode(entry('gray').key), {
      addr: hex('00000000000000000000ffff 7f0a0003'),
      port: 9080,
      protocol: 6,
      slot: 0,
    });
    assert.deepEqual(listenerKey.decode(entry('plain').key), {
      addr: hex('00000000000000000000ffff 7f0a0001'),
      port: 9080,
      protocol: 6,
      slot: 0,
    });
    assert.deepEqual(listenerKey.decode(entry('dns').key), {
      addr: hex('00000000000000000000ffff 7f0a0001'),
      port: 9080,
      protocol: 17,
      slot: 0,
    });
    // 9080 = 0x2378, little-endian at offset 16; protocol at 18; slot 0 (the reconciler sets the slot it writes)
    assert.deepEqual([...entry('gray').key.subarray(16, 20)], [0x78, 0x23, 6, 0]);
    assert.equal(entry('gray').key.length, listenerKey.size);
  });

  test('keys: IPv6 and the wildcards', () => {
    assert.deepEqual(listenerKey.decode(entry('six').key), {
      addr: hex('fd00 0000 0000 0000 0000 0000 0000 0005'),
      port: 443,
      protocol: 6,
      slot: 0,
    });
    assert.deepEqual(listenerKey.decode(entry('wild').key), {
      addr: hex('00000000000000000000ffff 00000000'),
      port: 21030,
      protocol: 6,
      slot: 0,
    });
    assert.deepEqual(listenerKey.decode(entry('wild6').key), {
      addr: Buffer.alloc(16),
      port: 21030,
      protocol: 6,
      slot: 0,
    });
  });
});
