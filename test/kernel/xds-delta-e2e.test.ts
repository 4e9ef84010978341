/**
 * Delta xDS end to end on the real kernel: the in-repo ADS server drives a real Daemon (in this process, its own
 * pin directory, programs only on a cgroup this test made) through the XdsClient in `mode = "delta"`. Real
 * connections from a process in the test cgroup; real map contents.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { XdsClient } from '../../src/api/xds/client.js';
import { parseXdsConfig } from '../../src/api/xds/config.js';
import { attachXds } from '../../src/api/xds/plugin.js';
import type { dumpMaps } from '../../src/controller/map-dump.js';
import { cluster, type EpSpec, loadAssignment, TYPE, tcpListener, XdsTestServer } from '../fixtures/xds-server.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';
import { type Backends, dialFrom, tcpBackends } from './support/peers.js';

type Maps = ReturnType<typeof dumpMaps>;

const A = 'outbound|9080||delta-a.default.svc.cluster.local';
const B = 'outbound|9081||delta-b.default.svc.cluster.local';
const VIP_A = '127.43.20.1';
const VIP_B = '127.43.20.2';
const ep = (port: number): EpSpec => ({ address: '127.0.0.1', port });

async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('delta xDS → daemon → kernel (real)', () => {
  let cg: TestCgroup;
  let mesh: TestDaemon;
  let server: XdsTestServer;
  let client: XdsClient;
  let backends: Backends | undefined;

  const maps = async (): Promise<Maps> => ((await mesh.daemon.dumpConfig()) as { maps: Maps }).maps;
  const listenerAt = (m: Maps, addr: string, p: number) => m.listeners.find((l) => l.address === addr && l.port === p);
  const endpointsOf = (m: Maps, name: string) => m.clusters.find((c) => c.name === name)?.endpoints.map((e) => e.port);
  const replies = async (vip: string, p: number, n: number) =>
    (await dialFrom(cg.path, 'tcp', vip, p, n)).map((r) => r.reply ?? r.error);
  const configVersion = () => mesh.daemon.status().configVersion;

  before(async () => {
    cg = makeCgroup('xds-delta');
    backends = await tcpBackends([
      { name: 'a', host: '127.0.0.1', port: 33001 },
      { name: 'b', host: '127.0.0.1', port: 33002 },
      { name: 'c', host: '127.0.0.1', port: 33003 },
    ]);
    server = new XdsTestServer('d');
    const port = await server.start();
    mesh = await startTestDaemon('xds-delta', `[[services]]\ncgroup = "${cg.path}"\n`);
    const cfg = parseXdsConfig(
      { address: `127.0.0.1:${port}`, mode: 'delta', initial_backoff_ms: 50, max_backoff_ms: 300 },
      (k) => `test: xds.${k}`,
    );
    client = attachXds(mesh.daemon, cfg, pino({ level: 'warn' }));
  });

  after(async () => {
    try {
      await client?.stop();
    } finally {
      await server?.stop();
      await mesh?.destroy();
      await backends?.close();
      cg?.remove();
    }
  });

  test('initial push over delta: the VIPs reach their endpoints', async () => {
    server.set(TYPE.cluster, [cluster({ name: A }), cluster({ name: B })]);
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(33001), ep(33002)]), loadAssignment(B, [ep(33003)])]);
    server.set(TYPE.listener, [tcpListener(VIP_A, 9080, A), tcpListener(VIP_B, 9081, B)]);
    await until('both listeners in the map', async () => {
      const m = await maps();
      return listenerAt(m, VIP_A, 9080) && listenerAt(m, VIP_B, 9081) ? m : undefined;
    });
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 20)), new Set(['a', 'b']));
    assert.deepEqual(await replies(VIP_B, 9081, 3), ['c', 'c', 'c']);
    const dump = (await mesh.daemon.dumpConfig()) as { xds: { mode: string; shadowedListeners: string[] } };
    assert.equal(dump.xds.mode, 'delta');
    assert.deepEqual(dump.xds.shadowedListeners, []);
  });

  test('one endpoint change: one apply, only that cluster changes in the kernel', async () => {
    const v = configVersion();
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(33001), ep(33002), ep(33003)]), loadAssignment(B, [ep(33003)])]);
    await until('3 endpoints for A', async () => (endpointsOf(await maps(), A)?.length === 3 ? true : undefined));
    assert.equal(configVersion(), v + 1, 'one apply');
    assert.deepEqual(server.sentDeltas.at(-1)?.names, [A], 'only the changed assignment was sent');
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 30)), new Set(['a', 'b', 'c']));
  });

  test('reconnect: nothing re-sent, nothing re-applied; traffic unchanged', async () => {
    const v = configVersion();
    const sent = server.sentDeltas.length;
    const streams = server.requests.at(-1)?.stream ?? 0;
    server.dropStreams();
    await server.waitFor((r) => r.stream > streams && r.typeUrl === TYPE.endpoint && r.kind === 'initial', 10_000);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(server.sentDeltas.length, sent, 'the server had nothing to send');
    assert.equal(configVersion(), v, 'nothing re-applied');
    assert.equal(mesh.daemon.status().xdsConnected, true);
    assert.deepEqual(await replies(VIP_B, 9081, 2), ['c', 'c']);
  });

  test('removal: cluster B and its listener leave the kernel; its VIP is no longer steered', async () => {
    server.set(TYPE.cluster, [cluster({ name: A })]);
    await until('listener B gone', async () => (listenerAt(await maps(), VIP_B, 9081) ? undefined : true));
    assert.ok(server.sentDeltas.some((d) => d.typeUrl === TYPE.cluster && d.removed.includes(B)));
    const [r] = await dialFrom(cg.path, 'tcp', VIP_B, 9081, 1);
    assert.equal(r?.error, 'ECONNREFUSED');
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 30)), new Set(['a', 'b', 'c']));
  });
});
