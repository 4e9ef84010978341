/**
 * The reconciler against in-memory maps that fail on the N-th write, for every N an apply (and the replay into
 * the other slot after it) makes: the config the programs read (the active slot) is always exactly the old or
 * the new one. A failed write before the switch rolls back (the old config stays, nothing stray is left); a daemon
 * that dies at the N-th write (no write after it) leaves the old or the new config, and a restart converges.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import pino from 'pino';
import { KmeshError } from '../../src/contracts/errors.js';
import { desiredState } from '../../src/controller/desired-state.js';
import { Reconciler } from '../../src/controller/reconciler.js';
import type { MeshModel } from '../../src/model/types.js';
import {
  activeSlotKey,
  activeSlotValue,
  clusterKey,
  clusterValue,
  endpointKey,
  listenerKey,
} from '../../src/runtime/maps/layouts.js';
import { type MemoryMap, memoryMaps, WriteFaults } from '../support/memory-maps.js';
import { cluster, ep, listener } from '../support/model-builders.js';
import { wholeDelta } from '../support/whole-delta.js';

const logger = pino({ level: 'silent' });

const OLD: MeshModel = {
  clusters: [
    cluster('stays', [ep('127.0.0.1', 1), ep('127.0.0.2', 2)]),
    cluster('moves', [ep('127.0.0.3', 3), ep('127.0.0.4', 4, 3)]),
    cluster('policy', [ep('127.0.0.5', 5)]),
    cluster('goes', [ep('127.0.0.6', 6)]),
  ],
  listeners: [
    listener('a', '127.42.0.1', 32001, [['stays', 1]]),
    listener('b', '127.42.0.2', 32001, [
      ['moves', 1],
      ['policy', 1],
    ]),
    listener('c', '127.42.0.3', 32001, [['goes', 1]]),
  ],
};

const NEW: MeshModel = {
  clusters: [
    cluster('stays', [ep('127.0.0.1', 1), ep('127.0.0.2', 2)]),
    cluster('moves', [ep('127.0.0.3', 3), ep('127.0.0.7', 7), ep('127.0.0.8', 8)]),
    cluster('policy', [ep('127.0.0.5', 5)], { lbPolicy: 'random' }),
    cluster('comes', [ep('127.0.0.9', 9)]),
  ],
  listeners: [
    listener('a', '127.42.0.1', 32001, [['stays', 1]]),
    listener('b', '127.42.0.2', 32001, [
      ['moves', 3],
      ['policy', 1],
    ]),
    listener('d', '127.42.0.4', 32001, [['comes', 1]]),
  ],
};

type Maps = ReturnType<typeof memoryMaps>;

/** What the programs read: the active slot's listeners and clusters, each cluster with its endpoint set. */
function liveView(maps: Maps, slot = activeSlotOf(maps)) {
  const listeners: Record<string, string> = {};
  for (const [k, v] of maps.listeners.entries()) {
    const key = listenerKey.decode(k);
    if (key.slot === slot) listeners[listenerKey.encode({ ...key, slot: 0 }).toString('hex')] = v.toString('hex');
  }
  const clusters: Record<number, unknown> = {};
  for (const [k, v] of maps.clusters.entries()) {
    const { id, slot: s } = clusterKey.decode(k);
    if (s !== slot) continue;
    const { generation, ...value } = clusterValue.decode(v);
    const endpoints = Array.from({ length: value.endpoint_count }, (_, index) =>
      maps.endpoints.lookup(endpointKey.encode({ cluster_id: id, generation, index }))?.toString('hex'),
    );
    clusters[id] = { ...value, endpoints };
  }
  return { listeners, clusters };
}

function activeSlotOf(maps: Maps): number {
  const word = maps.activeSlot.lookup(activeSlotKey.encode({ index: 0 }));
  return word ? activeSlotValue.decode(word).slot : 0;
}

function expectedView(model: MeshModel) {
  const d = desiredState(model);
  const listeners: Record<string, string> = {};
  for (const [hex, l] of d.listeners) listeners[hex] = l.value.toString('hex');
  const clusters: Record<number, unknown> = {};
  for (const [id, c] of d.clusters) {
    const count = c.endpoints.length / 24;
    clusters[id] = {
      lb_policy: c.lbPolicy,
      endpoint_count: count,
      total_weight: c.totalWeight,
      flags: c.flags,
      pad: 0,
      endpoints: Array.from({ length: count }, (_, i) => c.endpoints.subarray(i * 24, (i + 1) * 24).toString('hex')),
    };
  }
  return { listeners, clusters };
}

const OLD_VIEW = expectedView(OLD);
const NEW_VIEW = expectedView(NEW);

/** After the grace period: both slots hold `model`, and nothing else is in any map. */
function assertSettled(maps: Maps, model: MeshModel): void {
  const view = expectedView(model);
  assert.deepEqual(liveView(maps, 0), view, 'slot 0');
  assert.deepEqual(liveView(maps, 1), view, 'slot 1');
  const endpoints = Object.values(view.clusters).reduce(
    (n: number, c) => n + (c as { endpoint_count: number }).endpoint_count,
    0,
  );
  assert.equal(maps.endpoints.entriesByKey.size, endpoints, 'endpoint entries: no stray generation');
  assert.equal(maps.roundRobin.entriesByKey.size, model.clusters.length, 'one cursor per cluster');
  assert.equal(maps.listeners.entriesByKey.size, 2 * model.listeners.length);
  assert.equal(maps.clusters.entriesByKey.size, 2 * model.clusters.length);
}

/** A reconciler that applied OLD and let the grace period pass. */
async function withOld(faults: WriteFaults): Promise<{ maps: Maps; reconciler: Reconciler }> {
  const maps = memoryMaps(faults);
  const reconciler = new Reconciler(maps, logger);
  reconciler.adopt();
  await reconciler.apply(wholeDelta(OLD, reconciler.liveKeys()));
  await reconciler.flush();
  assertSettled(maps, OLD);
  return { maps, reconciler };
}

/** Writes of one OLD → NEW apply plus the replay after it, without faults. */
async function writesOfTheSwitch(): Promise<number> {
  const faults = new WriteFaults();
  const { reconciler } = await withOld(faults);
  const before = faults.writes;
  await reconciler.apply(wholeDelta(NEW, reconciler.liveKeys()));
  await reconciler.flush();
  return faults.writes - before;
}

const total = await writesOfTheSwitch();

describe('reconciler: a write failing at any point', () => {
  test(`the switch makes ${total} writes (endpoints, both slots, the slot word, cleanup)`, () => {
    assert.ok(total > 20, String(total));
  });

  for (let n = 1; n <= total; n++) {
    test(`write ${n} fails: the old config stays live (or the new one is whole), and the next apply converges`, async () => {
      const faults = new WriteFaults();
      const { maps, reconciler } = await withOld(faults);
      faults.failAt = faults.writes + n;
      let threw = false;
      try {
        await reconciler.apply(wholeDelta(NEW, reconciler.liveKeys()));
      } catch (err) {
        threw = true;
        assert.ok(err instanceof KmeshError, String(err));
        assert.match(err.message, /the previous config stays live/);
      }
      assert.deepEqual(liveView(maps), threw ? OLD_VIEW : NEW_VIEW);
      await reconciler.flush(); // the replay into the other slot may be what fails
      assert.deepEqual(liveView(maps), threw ? OLD_VIEW : NEW_VIEW);
      if (threw) {
        // rolled back: nothing of the new config is left (its endpoint sets were deleted)
        const old = Object.values(OLD_VIEW.clusters).reduce(
          (k: number, c) => k + (c as { endpoint_count: number }).endpoint_count,
          0,
        );
        assert.equal(maps.endpoints.entriesByKey.size, old, 'no stray endpoint entries after the rollback');
      }
      await reconciler.apply(wholeDelta(NEW, reconciler.liveKeys()));
      await reconciler.flush();
      assertSettled(maps, NEW);
    });
  }
});

describe('reconciler: the daemon dies at any write', () => {
  for (let n = 1; n <= total; n++) {
    test(`dead at write ${n}: the kernel reads the old or the new config; a restart converges`, async () => {
      const faults = new WriteFaults();
      const { maps, reconciler } = await withOld(faults);
      // From the n-th write on, nothing reaches the maps (no rollback either: the process is gone).
      const start = faults.writes;
      const real = faults.write.bind(faults);
      faults.write = (operation: string) => {
        if (faults.writes + 1 - start >= n) throw new Error(`dead: ${operation}`);
        real(operation);
      };
      try {
        await reconciler.apply(wholeDelta(NEW, reconciler.liveKeys()));
        await reconciler.flush();
      } catch {
        // the process died here
      }
      const view = liveView(maps);
      assert.ok(
        JSON.stringify(view) === JSON.stringify(OLD_VIEW) || JSON.stringify(view) === JSON.stringify(NEW_VIEW),
        `write ${n}: the live slot is neither the old nor the new config`,
      );
      faults.write = real;
      const restarted = new Reconciler(maps, logger);
      restarted.adopt();
      await restarted.apply(wholeDelta(NEW, restarted.liveKeys()));
      await restarted.flush();
      assertSettled(maps, NEW);
    });
  }
});

test('memory maps: the N-th write fails once', () => {
  const faults = new WriteFaults();
  faults.failAt = 2;
  const maps = memoryMaps(faults);
  const m: MemoryMap = maps.listeners;
  m.update(Buffer.from('01', 'hex'), Buffer.from('aa', 'hex'));
  assert.throws(() => m.update(Buffer.from('02', 'hex'), Buffer.from('bb', 'hex')), /EIO/);
  m.update(Buffer.from('03', 'hex'), Buffer.from('cc', 'hex'));
  assert.deepEqual([...m.entriesByKey.keys()], ['01', '03']);
});
