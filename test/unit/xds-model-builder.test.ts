/** The incremental model builder: changes proportional to what was staged, and exact rollback (from empty too). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeCluster, decodeListener, decodeLoadAssignment } from '../../src/api/xds/decode.js';
import { XdsModelBuilder } from '../../src/api/xds/model-builder.js';
import { cluster, type EpSpec, loadAssignment, tcpListener } from '../fixtures/xds-server.js';

const eps = (...ports: number[]): EpSpec[] => ports.map((p) => ({ address: '127.0.0.1', port: p }));
const c = (name: string) => decodeCluster(cluster({ name }).value, 0);
const a = (name: string, ...ports: number[]) => decodeLoadAssignment(loadAssignment(name, eps(...ports)).value, 0);
const l = (vip: string, dest: string, name?: string) => decodeListener(tcpListener(vip, 80, dest, name).value, 0);

/** Everything observable about a builder (Map order is not: a rollback may re-insert a key at the end). */
function view(b: XdsModelBuilder) {
  const m = b.snapshot();
  return {
    model: { listeners: m.listeners, clusters: m.clusters.sort((x, y) => x.name.localeCompare(y.name)) },
    eds: b.edsNames(),
    rds: b.rdsNames(),
    shadowed: b.shadowed(),
    state: [b.state.clusters, b.state.assignments, b.state.listeners].map((x) => [...x.keys()].sort()),
  };
}

function filled(): XdsModelBuilder {
  const b = new XdsModelBuilder();
  for (const n of ['a', 'b', 'c']) {
    b.setCluster(n, c(n));
    b.setAssignment(n, a(n, 1000));
  }
  b.setListener('la', l('127.43.9.1', 'a', 'la'));
  b.setListener('lb', l('127.43.9.2', 'b', 'lb'));
  b.setListener('lb2', l('127.43.9.2', 'c', 'lb2')); // shadowed by lb
  b.build();
  b.commit();
  return b;
}

describe('xds model builder', () => {
  it('one assignment changed → one cluster upserted, no listener touched', () => {
    const b = filled();
    b.setAssignment('b', a('b', 1000, 1001));
    const r = b.build();
    assert.deepEqual(
      r.change.upsertClusters.map((x) => [x.name, x.endpoints.length]),
      [['b', 2]],
    );
    assert.deepEqual([r.change.upsertListeners, r.change.removeListeners, r.change.removeClusters], [[], [], []]);
  });

  it('a cluster removed: its listener goes, the shadowed one beside it takes the address, the EDS name is pruned', () => {
    const b = filled();
    b.setCluster('b', undefined);
    const r = b.build();
    b.commit();
    assert.deepEqual(r.change.removeClusters, ['b']);
    assert.deepEqual(r.change.removeListeners, ['lb']);
    assert.deepEqual(
      r.change.upsertListeners.map((x) => x.name),
      ['lb2'],
    );
    assert.deepEqual(r.pruned.assignments, ['b']);
    assert.equal(r.subscriptionsChanged, true);
    assert.deepEqual(b.edsNames(), ['a', 'c']);
    assert.deepEqual(b.shadowed(), []);
  });

  it('rollback restores exactly what was committed', () => {
    const b = filled();
    const before = view(b);
    assert.deepEqual(before.shadowed, ['listener lb2: 127.43.9.2:80 already programmed by lb; skipped']);
    b.setCluster('b', undefined);
    b.setCluster('d', c('d'));
    b.setAssignment('a', a('a', 2000));
    b.setListener('la', undefined);
    b.setListener('ld', l('127.43.9.4', 'd', 'ld'));
    b.setDns(new Map([['x', ['127.0.0.9']]]));
    b.build();
    b.rollback();
    assert.deepEqual(view(b), before);
    // And it works on: the same change again gives the same result as on a fresh copy.
    b.setAssignment('a', a('a', 2000));
    assert.deepEqual(
      b.build().change.upsertClusters.map((x) => x.endpoints[0]?.port),
      [2000],
    );
  });

  it('rollback of the first push (begun empty, not journaled) leaves an empty builder that takes the push again', () => {
    const b = new XdsModelBuilder();
    b.setCluster('a', c('a'));
    b.setAssignment('a', a('a', 1000));
    b.setListener('la', l('127.43.9.1', 'a', 'la'));
    const first = b.build();
    assert.equal(first.change.upsertListeners.length, 1);
    b.rollback();
    assert.deepEqual(view(b), view(new XdsModelBuilder()));
    b.setCluster('a', c('a'));
    b.setAssignment('a', a('a', 1000));
    b.setListener('la', l('127.43.9.1', 'a', 'la'));
    const again = b.build();
    b.commit();
    assert.deepEqual(again.change, first.change);
    assert.deepEqual(b.edsNames(), ['a']);
  });
});
