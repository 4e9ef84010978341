/** desiredState: the model as map entries, decoded back with the layouts the kernel reads. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fnv1a32 } from '../../src/controller/cluster-ids.js';
import { desiredState } from '../../src/controller/desired-state.js';
import type { MeshModel } from '../../src/model/types.js';
import {
  CLUSTER_RESILIENT,
  CLUSTER_UNIFORM_WEIGHTS,
  clusterPolicy,
  endpointValue,
  level,
  levels,
  listenerKey,
  listenerValue,
  MAGLEV_TABLE_SIZE,
  tableChunk,
} from '../../src/runtime/maps/layouts.js';
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
        { addr: hex('00000000000000000000ffff 7f000001'), port: 9081, level: 0, pad: 0, cum_weight: 1 },
        { addr: hex('00000000000000000000ffff 7f000002'), port: 9082, level: 0, pad: 0, cum_weight: 4 },
        { addr: hex('fd00 0000 0000 0000 0000 0000 0001 0002'), port: 9083, level: 0, pad: 0, cum_weight: 10 },
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
    // least_request needs the per-endpoint counts: the cluster takes the resilient path
    assert.equal(byName('one').flags, CLUSTER_UNIFORM_WEIGHTS | CLUSTER_RESILIENT);
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

describe('desiredState: resilience', () => {
  const model: MeshModel = {
    clusters: [
      cluster(
        'tiers',
        [
          { ...ep('127.0.0.1', 1), priority: 2 },
          ep('127.0.0.2', 2),
          { ...ep('127.0.0.3', 3), priority: 2 },
          ep('127.0.0.4', 4),
        ],
        {
          outlierDetection: {
            consecutiveFailures: 3,
            baseEjectionTimeMs: 1000,
            maxEjectionTimeMs: 5000,
            maxEjectionPercent: 50,
            intervalMs: 2000,
          },
          maxConnections: 10,
        },
      ),
      cluster(
        'local',
        [
          { ...ep('127.0.0.1', 1), locality: { region: 'r', zone: 'a' } },
          { ...ep('127.0.0.2', 1), locality: { region: 'r', zone: 'b' } },
          { ...ep('127.0.0.3', 1), locality: { region: 'r', zone: 'b' } },
        ],
        {
          localityWeights: [
            { locality: { region: 'r', zone: 'a' }, weight: 1 },
            { locality: { region: 'r', zone: 'b' }, weight: 3 },
          ],
        },
      ),
      cluster('mag', [ep('127.0.0.1', 1), ep('127.0.0.2', 1)], { lbPolicy: 'maglev', hashKey: 'cgroup' }),
      cluster('plain', [ep('127.0.0.1', 1)]),
    ],
    listeners: [],
  };
  const state = desiredState(model);
  const byName = (name: string) => state.clusters.get(fnv1a32(name)) ?? assert.fail(name);

  test('endpoints grouped by priority level, configured order within a level; level spans', () => {
    const c = byName('tiers');
    const decoded = split(c.endpoints).map((b) => endpointValue.decode(b));
    assert.deepEqual(
      decoded.map((e) => [e.port, e.level, e.cum_weight]),
      [
        [2, 0, 1],
        [4, 0, 2],
        [1, 1, 3],
        [3, 1, 4],
      ],
    );
    const lv = levels.decode(c.levels ?? assert.fail('no levels'));
    assert.equal(lv.level_count, 2);
    const spans = [0, 1].map((i) => level.decode(lv.level.subarray(i * level.size, (i + 1) * level.size)));
    assert.deepEqual(spans, [
      { start: 0, count: 2, cum_base: 0, weight: 2 },
      { start: 2, count: 2, cum_base: 2, weight: 2 },
    ]);
  });

  test('policy: outlier detection in ns, max_connections; the RESILIENT flag', () => {
    const c = byName('tiers');
    assert.ok(c.flags & CLUSTER_RESILIENT);
    const p = clusterPolicy.decode(c.policy ?? assert.fail('no policy'));
    assert.equal(p.consecutive_failures, 3);
    assert.equal(p.base_ejection_ns, 1_000_000_000n);
    assert.equal(p.max_ejection_ns, 5_000_000_000n);
    assert.equal(p.interval_ns, 2_000_000_000n);
    assert.equal(p.max_ejection_percent, 50);
    assert.equal(p.max_connections, 10);
    assert.equal(p.syn_rto_jiffies, 0);
  });

  test('locality weights are folded into endpoint weights: 1 : 3 split over the locality', () => {
    const c = byName('local');
    const cum = split(c.endpoints).map((b) => endpointValue.decode(b).cum_weight);
    const weights = cum.map((w, i) => w - (cum[i - 1] ?? 0));
    assert.deepEqual(weights, [1000, 1500, 1500]);
    assert.equal(c.flags & CLUSTER_UNIFORM_WEIGHTS, 0);
  });

  test('maglev: a 65,537-entry table in chunks naming endpoint indices', () => {
    const c = byName('mag');
    const table = (c.table ?? assert.fail('no table'))
      .flatMap((b) => tableChunk.decode(b).index)
      .slice(0, MAGLEV_TABLE_SIZE);
    assert.equal(c.table?.length, Math.ceil(MAGLEV_TABLE_SIZE / 256));
    const zeros = table.filter((i) => i === 0).length;
    assert.ok(Math.abs(zeros - MAGLEV_TABLE_SIZE / 2) < MAGLEV_TABLE_SIZE * 0.01, `share of endpoint 0: ${zeros}`);
    assert.ok(table.every((i) => i === 0 || i === 1));
  });

  test('a plain cluster has no policy, levels or table', () => {
    const c = byName('plain');
    assert.equal(c.flags & CLUSTER_RESILIENT, 0);
    assert.equal(c.policy ?? c.levels ?? c.table, undefined);
  });
});
