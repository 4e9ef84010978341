/** The model as any source sees it: validateModel (by-name locator), cluster ids. (Merging: mesh-state.test.ts.) */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assignClusterIds, fnv1a32 } from '../../src/controller/cluster-ids.js';
import type { MeshModel } from '../../src/model/types.js';
import { validateModel } from '../../src/model/validate.js';
import { cluster, ep, listener } from '../support/model-builders.js';

describe('validateModel with the by-name locator (as for xDS)', () => {
  test('a valid model has no errors', () => {
    const model: MeshModel = {
      clusters: [cluster('outbound|9080||reviews'), cluster('v6', [ep('fd00::1', 80, 3), ep('::1', 81, 1000000)])],
      listeners: [
        listener('127.10.0.1_9080', '127.10.0.1', 9080, [['outbound|9080||reviews', 1]]),
        listener('127.10.0.1_9080_udp', '127.10.0.1', 9080, [['v6', 1]], 'udp'),
        listener('0.0.0.0_9080', '0.0.0.0', 9080, [
          ['outbound|9080||reviews', 90],
          ['v6', 10],
        ]),
        listener('v6', 'fd00::10', 443, [['v6', 1]], 'http'),
      ],
    };
    assert.deepEqual(validateModel(model), []);
  });

  test('every problem is named by resource', () => {
    const model: MeshModel = {
      clusters: [
        cluster('a', [ep('127.0.0.300', 0, 0), ep('example.com', 70000, 1000001), ep('127.0.0.1', 1, -1)]),
        cluster('a'),
        cluster('empty', []),
        { ...cluster('bad-lb'), lbPolicy: 'fastest' as never },
        cluster(''),
      ],
      listeners: [
        listener('l1', '127.10.0.1', 80, [['a', 1]]),
        listener('l1', '127.10.0.2', 80, [['a', 1]]),
        listener('l3', '127.10.0.1', 80, [['a', 1]], 'http'),
        listener('l4', 'example.com', 0, [['nope', 1]]),
        listener('l5', '127.10.0.5', 80, []),
        listener('l6', '127.10.0.6', 80, [
          ['a', 0],
          ['nope', 2],
        ]),
        { ...listener('l7', '127.10.0.7', 80, [['a', 1]]), protocol: 'sctp' as never },
        listener(
          'l8',
          '127.10.0.8',
          80,
          Array.from({ length: 17 }, (): [string, number] => ['a', 1]),
        ),
      ],
    };
    assert.deepEqual(validateModel(model), [
      'cluster "a" endpoints[0].address: not an IP address literal: "127.0.0.300"',
      'cluster "a" endpoints[0].port: must be an integer 1..65535, got 0',
      'cluster "a" endpoints[0].weight: must be an integer 1..1000000, got 0',
      'cluster "a" endpoints[1].address: not an IP address literal: "example.com"',
      'cluster "a" endpoints[1].port: must be an integer 1..65535, got 70000',
      'cluster "a" endpoints[1].weight: must be an integer 1..1000000, got 1000001',
      'cluster "a" endpoints[2].weight: must be an integer 1..1000000, got -1',
      'cluster "a" name: duplicate cluster name "a"',
      'cluster "empty" endpoints: the endpoint set is empty',
      'cluster "bad-lb" lb_policy: must be one of round_robin, random, least_request, maglev, ring_hash',
      'cluster "" name: is empty',
      'listener "l1" name: duplicate listener name "l1"',
      'listener "l3" address: 127.10.0.1:80/tcp is already used by listener "l1"',
      'listener "l4" address: not an IP address literal: "example.com"',
      'listener "l4" port: must be an integer 1..65535, got 0',
      'listener "l4" cluster: unknown cluster "nope"',
      'listener "l5" weighted_clusters: names no cluster',
      'listener "l6" weighted_clusters[0].weight: must be an integer 1..1000000, got 0',
      'listener "l6" weighted_clusters[1]: unknown cluster "nope"',
      'listener "l7" protocol: must be one of tcp, udp, http',
      'listener "l8" weighted_clusters: at most 16 clusters, got 17',
    ]);
  });

  test('an endpoint set found valid is still re-checked when it is a different object', () => {
    const good = cluster('a');
    assert.deepEqual(validateModel({ clusters: [good], listeners: [] }), []);
    const bad = cluster('a', [ep('127.0.0.1', 0)]);
    assert.deepEqual(validateModel({ clusters: [bad], listeners: [] }), [
      'cluster "a" endpoints[0].port: must be an integer 1..65535, got 0',
    ]);
    // the same invalid object is reported every time (only valid sets are remembered)
    assert.equal(validateModel({ clusters: [bad], listeners: [] }).length, 1);
  });

  test('a cluster whose total endpoint weight overflows the u32 cum_weight is refused', () => {
    // 4,295 × 1,000,000 = 4,295,000,000 > 2^32 - 1: every weight is valid on its own
    const heavy = cluster(
      'heavy',
      Array.from({ length: 4295 }, (_, i) => ep('127.0.0.1', 1 + i, 1_000_000)),
    );
    const errors = validateModel({ clusters: [heavy], listeners: [] });
    assert.equal(errors.length, 1, 'desiredState would throw a RangeError encoding cum_weight');
    assert.match(errors[0] ?? '', /^cluster "heavy" /);
  });

  test('one address spelled two ways clashes (same map key)', () => {
    const model: MeshModel = {
      clusters: [cluster('a')],
      listeners: [
        listener('v4', '127.10.0.1', 80, [['a', 1]]),
        listener('mapped', '::ffff:127.10.0.1', 80, [['a', 1]]),
        listener('v6', 'fd00::1', 80, [['a', 1]]),
        listener('v6-long', 'fd00:0:0:0:0:0:0:1', 80, [['a', 1]]),
        listener('v6-upper', 'FD00::1', 80, [['a', 1]]),
      ],
    };
    const errors = validateModel(model);
    assert.equal(errors.length, 3, errors.join('\n'));
    assert.match(errors[0] ?? '', /^listener "mapped" address: .* is already used by listener "v4"$/);
    assert.match(errors[1] ?? '', /^listener "v6-long" address: .* is already used by listener "v6"$/);
    assert.match(errors[2] ?? '', /^listener "v6-upper" address: .* is already used by listener "v6"$/);
  });
});

describe('cluster ids', () => {
  test('fnv1a32 matches the reference vectors', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
    assert.equal(fnv1a32('foobar'), 0xbf9cf968);
    // over UTF-8 bytes, not UTF-16 code units: checked against a byte-wise reference
    const reference = (bytes: number[]): number => {
      let h = 0x811c9dc5n;
      for (const b of bytes) h = ((h ^ BigInt(b)) * 0x01000193n) & 0xffffffffn;
      return Number(h);
    };
    assert.equal(fnv1a32('é'), reference([0xc3, 0xa9]));
    assert.equal(fnv1a32('outbound|9080||reviews'), reference([...Buffer.from('outbound|9080||reviews')]));
  });

  test('ids are the hash of the name, independent of input order', () => {
    const a = assignClusterIds(['outbound|9080||reviews', 'b', 'a']);
    const b = assignClusterIds(['a', 'outbound|9080||reviews', 'b']);
    assert.deepEqual([...a].sort(), [...b].sort());
    assert.equal(a.get('a'), 0xe40c292c);
    assert.equal(a.get('outbound|9080||reviews'), fnv1a32('outbound|9080||reviews'));
  });

  test('a real collision moves the later sorted name to the next id', () => {
    // Found by brute force over "c<n>": the first pair of equal FNV-1a hashes.
    const [first, second] = ['c1170850', 'c693596'];
    assert.equal(fnv1a32(first), 1491248120);
    assert.equal(fnv1a32(second), 1491248120);
    for (const order of [
      [first, second],
      [second, first],
    ]) {
      const ids = assignClusterIds(order);
      assert.equal(ids.get(first), 1491248120);
      assert.equal(ids.get(second), 1491248121);
    }
    // a third name that hashes onto the moved id is pushed once more (sorted after both)
    const ids = assignClusterIds([first, second, 'zzz']);
    assert.equal(new Set(ids.values()).size, 3);
  });

  test('100k names: deterministic and unique', () => {
    const names = Array.from({ length: 100_000 }, (_, i) => `outbound|${8000 + (i % 1000)}||svc-${i}.default.svc`);
    const ids = assignClusterIds(names);
    assert.equal(ids.size, 100_000);
    assert.equal(new Set(ids.values()).size, 100_000);
    const again = assignClusterIds([...names].reverse());
    for (const name of names) assert.equal(again.get(name), ids.get(name));
  });
});
