/**
 * MeshState: TOML + xDS merged by name (TOML wins), validated and encoded for what a change touches only, and
 * nothing kept from a refused change.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { fnv1a32 } from '../../src/controller/cluster-ids.js';
import { desiredState } from '../../src/controller/desired-state.js';
import { MeshState, replaceAll } from '../../src/controller/mesh-state.js';
import { emptyChange, type ModelChange } from '../../src/model/change.js';
import type { MeshModel } from '../../src/model/types.js';
import { boundKey } from '../../src/model/validate.js';
import { cluster, ep, listener } from '../support/model-builders.js';

const change = (part: Partial<ModelChange>): ModelChange => ({ ...emptyChange(), ...part });

async function applied(state: MeshState, source: 'toml' | 'xds', c: ModelChange) {
  const staged = await state.stage(source, c);
  staged.commit();
  return staged;
}

async function refused(state: MeshState, source: 'toml' | 'xds', c: ModelChange): Promise<string[]> {
  try {
    await state.stage(source, c);
  } catch (err) {
    assert.ok(err instanceof KmeshError);
    assert.equal(err.code, 'InvalidConfig');
    return err.message.split('\n');
  }
  assert.fail('the change was accepted');
}

const names = (m: MeshModel) => ({
  clusters: m.clusters.map((c) => `${c.source}:${c.name}`).sort(),
  listeners: m.listeners.map((l) => `${l.source}:${l.name}`).sort(),
});

describe('MeshState: TOML wins', () => {
  const toml: MeshModel = {
    clusters: [cluster('reviews', [ep('127.0.0.1', 1)], { source: 'toml' })],
    listeners: [listener('reviews', '127.10.0.1', 9080, [['reviews', 1]], 'tcp', 'toml')],
  };
  const withToml = async () => {
    const state = new MeshState();
    await applied(state, 'toml', replaceAll(state.source('toml'), toml));
    return state;
  };

  test('disjoint sources are side by side', async () => {
    const state = await withToml();
    const staged = await applied(
      state,
      'xds',
      change({
        upsertClusters: [cluster('ratings')],
        upsertListeners: [listener('ratings', '127.10.0.2', 9080, [['ratings', 1]])],
      }),
    );
    assert.deepEqual(staged.shadowed, []);
    assert.deepEqual(names(state.model()), {
      clusters: ['toml:reviews', 'xds:ratings'],
      listeners: ['toml:reviews', 'xds:ratings'],
    });
  });

  test('on a name clash the xDS cluster and listener are left out and reported; they return when TOML drops its own', async () => {
    const state = await withToml();
    const staged = await applied(
      state,
      'xds',
      change({
        upsertClusters: [cluster('reviews', [ep('127.0.0.9', 9)]), cluster('ratings')],
        upsertListeners: [listener('reviews', '127.10.0.9', 9080, [['ratings', 1]])],
      }),
    );
    assert.deepEqual(staged.shadowed, [
      'xDS cluster "reviews" is shadowed by the TOML cluster of that name',
      'xDS listener "reviews" is shadowed by the TOML listener of that name',
    ]);
    assert.deepEqual(staged.delta.clusters.size, 1, 'only ratings is new to the maps');
    const reviews = state.model().clusters.find((c) => c.name === 'reviews');
    assert.equal(reviews?.endpoints[0]?.address, '127.0.0.1');

    const back = await applied(state, 'toml', replaceAll(state.source('toml'), { clusters: [], listeners: [] }));
    assert.deepEqual(back.shadowed, []);
    assert.deepEqual(names(state.model()), {
      clusters: ['xds:ratings', 'xds:reviews'],
      listeners: ['xds:reviews'],
    });
    // the name keeps its id: the cluster entry is replaced, not removed and added
    assert.equal(back.delta.clusters.get(fnv1a32('reviews'))?.endpoints.length, 24);
  });

  test('an xDS listener on a TOML address:port (tcp~http, any spelling) is left out; udp on it is kept', async () => {
    const state = await withToml();
    const staged = await applied(
      state,
      'xds',
      change({
        upsertClusters: [cluster('ratings')],
        upsertListeners: [
          listener('127.10.0.1_9080', '127.10.0.1', 9080, [['ratings', 1]], 'http'),
          listener('mapped', '::ffff:127.10.0.1', 9080, [['ratings', 1]]),
          listener('udp', '127.10.0.1', 9080, [['ratings', 1]], 'udp'),
        ],
      }),
    );
    assert.deepEqual(staged.shadowed, [
      'xDS listener "127.10.0.1_9080" on 127.10.0.1:9080 is shadowed by a TOML listener on that address',
      'xDS listener "mapped" on ::ffff:127.10.0.1:9080 is shadowed by a TOML listener on that address',
    ]);
    assert.deepEqual(names(state.model()).listeners, ['toml:reviews', 'xds:udp']);
    // TOML moves away: the first xDS listener on that address takes it, the other clashes with it
    const moved = {
      ...toml,
      listeners: [listener('reviews', '127.10.0.7', 9080, [['reviews', 1]], 'tcp', 'toml')],
    };
    assert.deepEqual(await refused(state, 'toml', replaceAll(state.source('toml'), moved)), [
      'listener "mapped" address: ::ffff:127.10.0.1:9080/tcp is already used by listener "127.10.0.1_9080"',
    ]);
    assert.deepEqual(names(state.model()).listeners, ['toml:reviews', 'xds:udp'], 'nothing kept from the refusal');
  });
});

describe('MeshState: a change is validated where it reaches', () => {
  const base = async () => {
    const state = new MeshState();
    await applied(
      state,
      'xds',
      change({
        upsertClusters: [cluster('a'), cluster('b')],
        upsertListeners: [listener('la', '127.10.0.1', 80, [['a', 1]]), listener('lb', '127.10.0.2', 80, [['b', 1]])],
      }),
    );
    return state;
  };

  test('removing a cluster a listener still names is refused, naming the listener', async () => {
    const state = await base();
    assert.deepEqual(await refused(state, 'xds', change({ removeClusters: ['a'] })), [
      'listener "la" cluster: unknown cluster "a"',
    ]);
    // together with the listener it is fine
    const staged = await applied(state, 'xds', change({ removeClusters: ['a'], removeListeners: ['la'] }));
    assert.deepEqual([...staged.delta.clusters.values()], [null]);
    assert.deepEqual(names(state.model()), { clusters: ['xds:b'], listeners: ['xds:lb'] });
  });

  test('a new listener on a taken address, or naming an unknown cluster, is refused; the rest is untouched', async () => {
    const state = await base();
    assert.deepEqual(
      await refused(
        state,
        'xds',
        change({
          upsertListeners: [
            listener('lc', '127.10.0.1', 80, [['nope', 1]]),
            listener('ld', '127.10.0.4', 80, [['b', 1]]),
          ],
        }),
      ),
      [
        'listener "lc" address: 127.10.0.1:80/tcp is already used by listener "la"',
        'listener "lc" cluster: unknown cluster "nope"',
      ],
    );
    // moving "la" away frees its address in the same change
    const staged = await applied(
      state,
      'xds',
      change({
        upsertListeners: [listener('la', '127.10.0.9', 80, [['a', 1]]), listener('lc', '127.10.0.1', 80, [['b', 1]])],
      }),
    );
    assert.equal(staged.delta.listeners.size, 2, 'la set on its new key; lc set on the key la left (no removal)');
    assert.equal(state.listenerAt(boundKey({ address: '127.10.0.1', port: 80, protocol: 'tcp' })), 'lc');
  });

  test('bad fields and duplicate names are reported like validateModel does', async () => {
    const state = await base();
    assert.deepEqual(
      await refused(
        state,
        'xds',
        change({ upsertClusters: [cluster('c', [ep('127.0.0.1', 0)]), cluster('c'), cluster('e', [])] }),
      ),
      // the last of two upserts of one name is the one validated
      ['cluster "c" name: duplicate cluster name "c"', 'cluster "e" endpoints: the endpoint set is empty'],
    );
  });

  test('a change touches only what it names: the same objects again are no change at all', async () => {
    const state = new MeshState();
    const clusters = Array.from({ length: 100 }, (_, i) => cluster(`c${i}`, [ep('127.0.0.1', 1000 + i)]));
    const listeners = clusters.map((c, i) => listener(`l${i}`, `127.10.1.${i}`, 80, [[c.name, 1]]));
    const model = { clusters, listeners };
    const first = await applied(state, 'xds', replaceAll(state.source('xds'), model));
    assert.equal(first.delta.clusters.size, 100);
    assert.equal(first.delta.listeners.size, 100);
    // a SotW resend with one cluster changed: one entry
    const changed = [...clusters];
    changed[7] = cluster('c7', [ep('127.0.0.1', 2007)]);
    const again = await applied(state, 'xds', replaceAll(state.source('xds'), { clusters: changed, listeners }));
    assert.deepEqual([...again.delta.clusters.keys()], [fnv1a32('c7')]);
    assert.equal(again.delta.listeners.size, 0);
    // the encoding equals the whole-model one
    const whole = desiredState({ clusters: changed, listeners });
    assert.deepEqual(again.delta.clusters.get(fnv1a32('c7')), whole.clusters.get(fnv1a32('c7')));
    assert.deepEqual([...state.desiredKeys().listeners].sort(), [...whole.listeners.keys()].sort());
  });

  test('a colliding new name gets the next free id and keeps it', async () => {
    // c1170850 and c693596 collide under FNV-1a
    const state = new MeshState();
    await applied(state, 'xds', change({ upsertClusters: [cluster('c693596')] }));
    const staged = await applied(state, 'xds', change({ upsertClusters: [cluster('c1170850')] }));
    assert.deepEqual([...staged.delta.clusters.keys()], [1491248121]);
    assert.equal(state.clusterName(1491248120), 'c693596');
    assert.equal(state.clusterName(1491248121), 'c1170850');
  });
});
