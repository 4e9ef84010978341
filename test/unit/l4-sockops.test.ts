/**
 * When the daemon attaches kmesh_l4_sockops: not for a plain config, before the first cluster with a policy is
 * written, and from then on for good (also after a restart, from the mode or a pinned link).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { L4_SOCKOPS_PROGRAM, L4Sockops } from '../../src/controller/l4-sockops.js';
import type { MeshModel } from '../../src/model/types.js';
import type { BpfProgram } from '../../src/runtime/bpf-object.js';
import { memoryMaps } from '../support/memory-maps.js';
import { cluster, listener } from '../support/model-builders.js';
import { wholeDelta } from '../support/whole-delta.js';

const prog = (name: string): BpfProgram => ({ name, fd: -1, attachType: 0 });
const PROGRAMS = ['kmesh_connect4', L4_SOCKOPS_PROGRAM, 'kmesh_probe_sockops'].map(prog);
const names = (s: L4Sockops) => s.select(PROGRAMS).map((p) => p.name);
const noLive = { clusters: [], listeners: [] };
const model = (extra: Parameters<typeof cluster>[2] = {}): MeshModel => ({
  clusters: [cluster('c', undefined, extra)],
  listeners: [listener('l', '127.0.0.5', 80, [['c', 1]])],
});

test('a plain config attaches everything but the L4 sockops program, and publishes the mode off', () => {
  const maps = memoryMaps();
  const s = new L4Sockops(maps.l4Mode);
  s.adopt(false);
  assert.equal(s.switchOn(wholeDelta(model(), noLive)), false);
  assert.deepEqual(names(s), ['kmesh_connect4', 'kmesh_probe_sockops']);
  s.publish();
  assert.equal(new L4Sockops(maps.l4Mode).attached, false);
  const adopted = new L4Sockops(maps.l4Mode);
  adopted.adopt(false);
  assert.equal(adopted.attached, false);
});

test('the first cluster with a policy switches it on, first in the list; it stays on and a restart adopts it', () => {
  const maps = memoryMaps();
  const s = new L4Sockops(maps.l4Mode);
  s.adopt(false);
  for (const extra of [{ maxConnections: 1 }, { lbPolicy: 'least_request' as const }, { connectTimeoutMs: 500 }]) {
    const fresh = new L4Sockops(memoryMaps().l4Mode);
    assert.equal(fresh.switchOn(wholeDelta(model(extra), noLive)), true, JSON.stringify(extra));
  }
  assert.equal(s.switchOn(wholeDelta(model({ maxConnections: 1 }), noLive)), true);
  assert.equal(s.switchOn(wholeDelta(model({ maxConnections: 2 }), noLive)), false, 'already on');
  assert.deepEqual(names(s), [L4_SOCKOPS_PROGRAM, 'kmesh_connect4', 'kmesh_probe_sockops']);
  s.publish();
  // the policy goes, the program stays
  assert.equal(s.switchOn(wholeDelta(model(), noLive)), false);
  assert.equal(s.attached, true);
  const restarted = new L4Sockops(maps.l4Mode);
  restarted.adopt(false);
  assert.equal(restarted.attached, true, 'adopted from the mode');
  const fromLink = new L4Sockops(memoryMaps().l4Mode);
  fromLink.adopt(true);
  assert.equal(fromLink.attached, true, 'adopted from a pinned link');
});
