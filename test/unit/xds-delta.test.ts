/**
 * Delta (incremental) ADS against the in-repo server over a real gRPC stream: wildcard CDS/LDS, EDS by name,
 * per-resource versions, only what changed reaches the daemon, removals, reconnect with initial_resource_versions,
 * per-response ACK/NACK, and bad input.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { basic, eps, type Harness, harness, stopHarnesses } from '../fixtures/xds-harness.js';
import { cluster, loadAssignment, TYPE, tcpListener } from '../fixtures/xds-server.js';

afterEach(stopHarnesses);

const SVC = 'outbound|80||svc';

async function deltaUp(): Promise<Harness> {
  const h = await harness({ mode: 'delta' });
  basic(h.server);
  h.client.start();
  await h.waitModel((m) => m.listeners.length === 1);
  await h.server.waitAck(TYPE.listener);
  await h.server.waitAck(TYPE.endpoint);
  return h;
}

const settle = (ms = 150) => new Promise((r) => setTimeout(r, ms));

describe('xds client, delta', () => {
  it('initial: legacy wildcard CDS/LDS, EDS subscribed by name, every response ACKed, model applied', async () => {
    const h = await deltaUp();
    // The first request of each type on the stream: CDS and LDS open it, EDS follows the clusters.
    const initial = h.server.requests.filter((r) => r.kind === 'initial');
    assert.deepEqual(
      initial.map((r) => [r.typeUrl, r.subscribe]),
      [
        [TYPE.cluster, []],
        [TYPE.listener, []],
        [TYPE.endpoint, [SVC]],
      ],
    );
    assert.equal(initial[0]?.nodeId, 'sidecar~127.0.0.1~vm1.default~default.svc.cluster.local');
    const m = h.models.at(-1);
    assert.deepEqual(
      m?.clusters[0]?.endpoints.map((e) => e.port),
      [9001],
    );
    assert.equal(h.client.stats().nacks, 0);
    assert.equal(h.client.dump().mode, 'delta');
  });

  it('one endpoint change: only that assignment is sent and only that cluster reaches the daemon', async () => {
    const h = await deltaUp();
    h.server.upsert(TYPE.cluster, [cluster({ name: 'other' })]);
    h.server.set(TYPE.endpoint, [loadAssignment(SVC, eps(9001)), loadAssignment('other', eps(9100))]);
    await h.waitModel((m) => m.clusters.length === 2);
    const sentBefore = h.server.sentDeltas.length;
    const changesBefore = h.changes.length;
    h.server.set(TYPE.endpoint, [loadAssignment(SVC, eps(9001, 9002)), loadAssignment('other', eps(9100))]);
    await h.waitModel((m) => m.clusters.find((c) => c.name === SVC)?.endpoints.length === 2);
    await h.server.waitAck(TYPE.endpoint);
    const sent = h.server.sentDeltas.slice(sentBefore);
    assert.deepEqual(
      sent.map((d) => d.names),
      [[SVC]],
    );
    const changes = h.changes.slice(changesBefore);
    assert.equal(changes.length, 1);
    assert.deepEqual(
      changes[0]?.upsertClusters.map((c) => c.name),
      [SVC],
    );
    assert.deepEqual(changes[0]?.upsertListeners, []);
  });

  it('removal: a removed cluster goes with its listener, its EDS name is unsubscribed', async () => {
    const h = await deltaUp();
    h.server.set(TYPE.cluster, []);
    const m = await h.waitModel((m) => m.clusters.length === 0);
    assert.equal(m.listeners.length, 0);
    const sent = h.server.sentDeltas.find((d) => d.typeUrl === TYPE.cluster && d.removed.length > 0);
    assert.deepEqual(sent?.removed, [SVC]);
    const last = h.changes.at(-1);
    assert.deepEqual(last?.removeClusters, [SVC]);
    assert.deepEqual(last?.removeListeners, ['127.10.1.1_80']);
    const unsub = await h.server.waitFor((r) => r.typeUrl === TYPE.endpoint && (r.unsubscribe ?? []).length > 0);
    assert.deepEqual(unsub.unsubscribe, [SVC]);
  });

  it('reconnect: initial_resource_versions sent, nothing unchanged re-sent or re-applied; a change made meanwhile is', async () => {
    const h = await deltaUp();
    const applied = h.changes.length;
    const firstStream = h.server.requests[0]?.stream;
    h.server.dropStreams();
    const again = await h.server.waitFor(
      (r) => r.stream !== firstStream && r.typeUrl === TYPE.endpoint && r.kind === 'initial',
      5000,
    );
    assert.deepEqual(again.subscribe, [SVC], 'EDS re-subscribed by name');
    assert.deepEqual(Object.keys(again.initialVersions ?? {}), [SVC]);
    const cds = h.server.requests.find((r) => r.stream === again.stream && r.typeUrl === TYPE.cluster);
    assert.deepEqual(Object.keys(cds?.initialVersions ?? {}), [SVC]);
    assert.deepEqual(cds?.subscribe, [], 'CDS wildcard again');
    await settle();
    assert.equal(
      h.server.sentDeltas.filter((d) => d.stream === again.stream).length,
      0,
      'the server had nothing to send',
    );
    assert.equal(h.changes.length, applied, 'nothing re-applied');

    // A change while the stream is down arrives alone on the next stream.
    const second = again.stream;
    h.server.dropStreams();
    h.server.set(TYPE.endpoint, [loadAssignment(SVC, eps(9007))]);
    await h.waitModel((m) => m.clusters[0]?.endpoints[0]?.port === 9007);
    const sent = h.server.sentDeltas.filter((d) => d.stream > second);
    assert.deepEqual(
      sent.map((d) => [d.typeUrl, d.names]),
      [[TYPE.endpoint, [SVC]]],
    );
    assert.equal(h.changes.length, applied + 1);
    assert.equal(h.client.stats().nacks, 0);
  });

  it('ACK/NACK per response: a bad assignment is NACKed naming it; the good one beside it is applied', async () => {
    const h = await deltaUp();
    const bad = loadAssignment(SVC, [{ address: 'not-an-ip', port: 1 }]);
    const nonce = h.server.sendDelta(TYPE.endpoint, 'x1', [{ name: SVC, version: 'bad', resource: bad }]);
    const nack = await h.server.waitFor((r) => r.kind === 'nack' && r.responseNonce === nonce);
    assert.equal(nack.errorDetail?.code, 3);
    assert.match(nack.errorDetail?.message ?? '', /load assignment outbound\|80\|\|svc: endpoint address "not-an-ip"/);
    assert.deepEqual(
      h.models.at(-1)?.clusters[0]?.endpoints.map((e) => e.port),
      [9001],
      'last good config kept',
    );
    const good = loadAssignment(SVC, eps(9003));
    const ok = h.server.sendDelta(TYPE.endpoint, 'x2', [{ name: SVC, version: 'good', resource: good }]);
    await h.server.waitFor((r) => r.kind === 'ack' && r.responseNonce === ok);
    assert.equal(h.models.at(-1)?.clusters[0]?.endpoints[0]?.port, 9003);
  });

  it('apply throwing → NACK naming the resources; the refused change is rolled back, later ones apply', async () => {
    const h = await deltaUp();
    h.fail = new KmeshError('CapacityExceeded', 'endpoint map full');
    const n1 = h.server.sendDelta(TYPE.endpoint, 'y1', [
      { name: SVC, version: 'y1', resource: loadAssignment(SVC, eps(9011)) },
    ]);
    const nack = await h.server.waitFor((r) => r.kind === 'nack' && r.responseNonce === n1);
    assert.match(
      nack.errorDetail?.message ?? '',
      /rejected by the daemon \(clusters outbound\|80\|\|svc\): endpoint map full/,
    );
    h.fail = undefined;
    // The listener changes; the cluster must not carry the refused endpoints along.
    const n2 = h.server.sendDelta(TYPE.listener, 'y2', [
      { name: 'l2', version: 'y2', resource: tcpListener('127.10.1.2', 80, SVC, 'l2') },
    ]);
    await h.server.waitFor((r) => r.kind === 'ack' && r.responseNonce === n2);
    const last = h.changes.at(-1);
    assert.deepEqual(last?.upsertClusters, []);
    assert.deepEqual(
      last?.upsertListeners.map((l) => l.name),
      ['l2'],
    );
    // The same version of the refused resource again is not taken for "already held".
    const n3 = h.server.sendDelta(TYPE.endpoint, 'y1', [
      { name: SVC, version: 'y1', resource: loadAssignment(SVC, eps(9011)) },
    ]);
    await h.server.waitFor((r) => r.kind === 'ack' && r.responseNonce === n3);
    assert.equal(h.models.at(-1)?.clusters[0]?.endpoints[0]?.port, 9011);
  });

  it('bad input: removal of what was never sent, unknown type, name mismatch, missing body, duplicates, version regression', async () => {
    const h = await deltaUp();
    const applied = h.changes.length;
    const ackOf = (nonce: string) => h.server.waitFor((r) => r.responseNonce === nonce);

    // Removal of a resource never sent: ignored (Envoy does the same), ACKed, nothing applied.
    const r1 = await ackOf(h.server.sendDelta(TYPE.cluster, 'z1', [], ['never-sent']));
    assert.equal(r1.kind, 'ack');
    assert.equal(h.changes.length, applied);

    const r2 = await ackOf(h.server.sendDelta('type.googleapis.com/envoy.config.core.v3.Nonsense', 'z2', []));
    assert.equal(r2.kind, 'nack');
    assert.match(r2.errorDetail?.message ?? '', /unknown or unsubscribed type URL/);

    const other = cluster({ name: 'b' });
    const r3 = await ackOf(h.server.sendDelta(TYPE.cluster, 'z3', [{ name: 'a', version: '1', resource: other }]));
    assert.match(r3.errorDetail?.message ?? '', /CDS resource "a": the resource inside is named "b"/);

    const r4 = await ackOf(h.server.sendDelta(TYPE.cluster, 'z4', [{ name: 'c', version: '1' }]));
    assert.match(r4.errorDetail?.message ?? '', /CDS resource "c": no resource body/);

    const c = cluster({ name: 'c' });
    const r5 = await ackOf(
      h.server.sendDelta(TYPE.cluster, 'z5', [
        { name: 'c', version: '1', resource: c },
        { name: 'c', version: '2', resource: c },
      ]),
    );
    assert.match(r5.errorDetail?.message ?? '', /duplicate resource name "c"/);

    const r6 = await ackOf(
      h.server.sendDelta(
        TYPE.cluster,
        'z6',
        [{ name: 'c', version: '1', resource: cluster({ name: 'c', lbPolicy: 'random' }) }],
        ['c'],
      ),
    );
    assert.match(r6.errorDetail?.message ?? '', /"c": both updated and removed/);
    assert.equal(h.changes.length, applied, 'nothing applied by any of them');

    // Versions are opaque: an "older" version with other content is simply the new content (xDS has no order).
    const vOld = loadAssignment(SVC, eps(9020));
    const r7 = await ackOf(h.server.sendDelta(TYPE.endpoint, 'v0', [{ name: SVC, version: 'v0', resource: vOld }]));
    assert.equal(r7.kind, 'ack');
    assert.equal(h.models.at(-1)?.clusters[0]?.endpoints[0]?.port, 9020);
    assert.equal(h.client.connected, true);
  });
});
