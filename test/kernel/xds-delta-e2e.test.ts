/**
 * Delta xDS end to end on the real kernel: the in-repo ADS server drives a real Daemon (in this process, its own
 * pin directory, programs only on a cgroup this test made) through the XdsClient in `mode = "delta"`. Real
 * connections from a process in the test cgroup; real map contents.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cluster, type EpSpec, loadAssignment, TYPE, tcpListener } from '../fixtures/xds-server.js';
import { dialFrom } from './support/peers.js';
import {
  listenerAt,
  type Maps,
  mapsOf,
  replies as repliesFrom,
  startXdsMesh,
  stopXdsMesh,
  until,
  type XdsMesh,
} from './support/xds-mesh.js';

const A = 'outbound|9080||delta-a.default.svc.cluster.local';
const B = 'outbound|9081||delta-b.default.svc.cluster.local';
const VIP_A = '127.43.20.1';
const VIP_B = '127.43.20.2';
// Backends on an address of this suite's own range: a port of the ephemeral range on 127.0.0.1 may be taken by
// any outgoing connection on the machine at that moment.
const HOST = '127.43.0.10';
const ep = (port: number): EpSpec => ({ address: HOST, port });

describe('delta xDS → daemon → kernel (real)', () => {
  let x: XdsMesh | undefined;
  const env = () => x as XdsMesh;
  const maps = () => mapsOf(env().mesh);
  const endpointsOf = (m: Maps, name: string) => m.clusters.find((c) => c.name === name)?.endpoints.map((e) => e.port);
  const replies = (vip: string, p: number, n: number) => repliesFrom(env().cg, vip, p, n);
  const configVersion = () => env().mesh.daemon.status().configVersion;

  before(async () => {
    x = await startXdsMesh(
      'xds-delta',
      [
        { name: 'a', host: HOST, port: 33001 },
        { name: 'b', host: HOST, port: 33002 },
        { name: 'c', host: HOST, port: 33003 },
      ],
      { mode: 'delta' },
      'd',
    );
  });

  after(() => stopXdsMesh(x ?? {}));

  test('initial push over delta: the VIPs reach their endpoints', async () => {
    env().server.set(TYPE.cluster, [cluster({ name: A }), cluster({ name: B })]);
    env().server.set(TYPE.endpoint, [loadAssignment(A, [ep(33001), ep(33002)]), loadAssignment(B, [ep(33003)])]);
    env().server.set(TYPE.listener, [tcpListener(VIP_A, 9080, A), tcpListener(VIP_B, 9081, B)]);
    await until('both listeners in the map', async () => {
      const m = await maps();
      return listenerAt(m, VIP_A, 9080) && listenerAt(m, VIP_B, 9081) ? m : undefined;
    });
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 20)), new Set(['a', 'b']));
    assert.deepEqual(await replies(VIP_B, 9081, 3), ['c', 'c', 'c']);
    const dump = (await env().mesh.daemon.dumpConfig()) as { xds: { mode: string; shadowedListeners: string[] } };
    assert.equal(dump.xds.mode, 'delta');
    assert.deepEqual(dump.xds.shadowedListeners, []);
  });

  test('one endpoint change: one apply, only that cluster changes in the kernel', async () => {
    const v = configVersion();
    env().server.set(TYPE.endpoint, [
      loadAssignment(A, [ep(33001), ep(33002), ep(33003)]),
      loadAssignment(B, [ep(33003)]),
    ]);
    await until('3 endpoints for A', async () => (endpointsOf(await maps(), A)?.length === 3 ? true : undefined));
    assert.equal(configVersion(), v + 1, 'one apply');
    assert.deepEqual(env().server.sentDeltas.at(-1)?.names, [A], 'only the changed assignment was sent');
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 30)), new Set(['a', 'b', 'c']));
  });

  test('reconnect: nothing re-sent, nothing re-applied; traffic unchanged', async () => {
    const v = configVersion();
    const sent = env().server.sentDeltas.length;
    const streams = env().server.requests.at(-1)?.stream ?? 0;
    env().server.dropStreams();
    await env().server.waitFor(
      (r) => r.stream > streams && r.typeUrl === TYPE.endpoint && r.kind === 'initial',
      10_000,
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(env().server.sentDeltas.length, sent, 'the server had nothing to send');
    assert.equal(configVersion(), v, 'nothing re-applied');
    assert.equal(env().mesh.daemon.status().xdsConnected, true);
    assert.deepEqual(await replies(VIP_B, 9081, 2), ['c', 'c']);
  });

  test('removal: cluster B and its listener leave the kernel; its VIP is no longer steered', async () => {
    env().server.set(TYPE.cluster, [cluster({ name: A })]);
    await until('listener B gone', async () => (listenerAt(await maps(), VIP_B, 9081) ? undefined : true));
    assert.ok(env().server.sentDeltas.some((d) => d.typeUrl === TYPE.cluster && d.removed.includes(B)));
    const [r] = await dialFrom(env().cg.path, 'tcp', VIP_B, 9081, 1);
    assert.equal(r?.error, 'ECONNREFUSED');
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 30)), new Set(['a', 'b', 'c']));
  });
});
