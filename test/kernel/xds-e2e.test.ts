/**
 * xDS end to end on the real kernel: the in-repo ADS server drives a real Daemon (in this process, its own pin
 * directory, programs only on a cgroup this test made) through the XdsClient. Assertions on real connections
 * from a process in the test cgroup and on the real map contents (decoded map dump, and bpftool).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { XdsClient } from '../../src/api/xds/client.js';
import {
  cluster,
  type EpSpec,
  httpListener,
  loadAssignment,
  type Res,
  routeConfig,
  TYPE,
  tcpListener,
  XdsTestServer,
} from '../fixtures/xds-server.js';
import type { TestCgroup } from './support/cgroup.js';
import type { TestDaemon } from './support/daemon.js';
import { type Backends, count, dialFrom } from './support/peers.js';
import {
  listenerAt,
  type Maps,
  mapsOf,
  replies as repliesFrom,
  startXdsMesh,
  stopXdsMesh,
  until,
} from './support/xds-mesh.js';

const A = 'outbound|9080||svc-a.default.svc.cluster.local';
const B = 'outbound|9081||svc-b.default.svc.cluster.local';
const VIP_A = '127.10.20.1';
const VIP_B = '127.10.20.2';
const ep = (port: number, weight?: number): EpSpec => ({ address: '127.0.0.1', port, ...(weight ? { weight } : {}) });

describe('xDS → daemon → kernel (real)', () => {
  let cg: TestCgroup;
  let mesh: TestDaemon;
  let server: XdsTestServer;
  let client: XdsClient;
  let backends: Backends | undefined;
  let port = 0;

  const maps = () => mapsOf(mesh);
  // What the data path reads. Removed clusters and superseded endpoint generations are swept after the
  // reconciler's grace period (their names are already gone), so those are left out of comparisons.
  const live = async () => {
    const m = await maps();
    return { listeners: m.listeners, clusters: m.clusters.filter((c) => c.name !== null) };
  };
  const endpointsOf = (m: Maps, name: string) =>
    m.clusters.find((c) => c.name === name)?.endpoints.map((e) => `${e.port}/${e.cumulativeWeight}`);
  const replies = (vip: string, p: number, n: number) => repliesFrom(cg, vip, p, n);

  before(async () => {
    ({ cg, mesh, server, client, port, backends } = await startXdsMesh('xds', [
      { name: 'a', host: '127.0.0.1', port: 22001 },
      { name: 'b', host: '127.0.0.1', port: 22002 },
      { name: 'c', host: '127.0.0.1', port: 22003 },
      { name: 'd', host: '127.0.0.1', port: 22004 },
    ]));
  });

  after(() => stopXdsMesh({ cg, mesh, server, client, ...(backends ? { backends } : {}) }));

  test('initial push: CDS + EDS + LDS reach the maps; connections to the VIP reach the endpoints', async () => {
    server.set(TYPE.cluster, [cluster({ name: A })]);
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22001), ep(22002)])]);
    server.set(TYPE.listener, [tcpListener(VIP_A, 9080, A)]);
    await server.waitAck(TYPE.listener, 10_000);
    const m = await until('listener in the map', async () => {
      const m = await maps();
      return listenerAt(m, VIP_A, 9080) ? m : undefined;
    });
    assert.deepEqual(
      listenerAt(m, VIP_A, 9080)?.clusters.map((c) => c.name),
      [A],
    );
    assert.deepEqual(endpointsOf(m, A), ['22001/1', '22002/2']);
    assert.equal(mesh.daemon.status().xdsConnected, true);
    const got = await replies(VIP_A, 9080, 20);
    assert.deepEqual(new Set(got), new Set(['a', 'b']), JSON.stringify(got));
    // The same, seen by bpftool on the pinned map.
    const dump = JSON.parse(
      execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', join(mesh.pinDir, 'maps', 'kmesh_listeners')], {
        encoding: 'utf8',
      }),
    );
    assert.equal(dump.length, 1, 'one listener entry in the pinned kmesh_listeners map');
  });

  test('endpoint add then remove', async () => {
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22001), ep(22002), ep(22003)])]);
    await server.waitAck(TYPE.endpoint);
    await until('3 endpoints', async () => (endpointsOf(await maps(), A)?.length === 3 ? true : undefined));
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 30)), new Set(['a', 'b', 'c']));
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22002), ep(22003)])]);
    await server.waitAck(TYPE.endpoint);
    assert.deepEqual(endpointsOf(await maps(), A), ['22002/1', '22003/2']);
    const got = await replies(VIP_A, 9080, 30);
    assert.ok(!got.includes('a'), `removed endpoint still used: ${got}`);
    assert.deepEqual(new Set(got), new Set(['b', 'c']));
  });

  test('weight change: 1:3 in the map and over 2,000 connections (random LB)', async () => {
    server.set(TYPE.cluster, [cluster({ name: A, lbPolicy: 'random' })]);
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22002, 1), ep(22003, 3)])]);
    await server.waitAck(TYPE.endpoint);
    await server.waitAck(TYPE.cluster);
    assert.deepEqual(endpointsOf(await maps(), A), ['22002/1', '22003/4']);
    const tally = count(await dialFrom(cg.path, 'tcp', VIP_A, 9080, 2000));
    const c = tally.get('c') ?? 0;
    assert.equal((tally.get('b') ?? 0) + c, 2000, JSON.stringify([...tally]));
    const sigma = Math.sqrt(2000 * 0.75 * 0.25);
    assert.ok(Math.abs(c - 1500) <= 5 * sigma, `weight-3 endpoint got ${c}/2000`);
  });

  test('HTTP listener 0.0.0.0_<port> + RDS: the VIP from the vhost domains is steered', async () => {
    server.set(TYPE.cluster, [cluster({ name: A, lbPolicy: 'random' }), cluster({ name: B })]);
    server.upsert(TYPE.endpoint, [loadAssignment(B, [ep(22004)])]);
    server.set(TYPE.listener, [tcpListener(VIP_A, 9080, A), httpListener(9081)]);
    server.set(TYPE.route, [
      routeConfig('9081', [{ name: 'svc-b:9081', domains: ['svc-b', `${VIP_B}`, `${VIP_B}:9081`], dest: B }]),
    ]);
    await until('HTTP VIP listener', async () => listenerAt(await maps(), VIP_B, 9081));
    assert.equal(listenerAt(await maps(), '0.0.0.0', 9081), undefined, 'no wildcard listener from xDS');
    assert.deepEqual(await replies(VIP_B, 9081, 3), ['d', 'd', 'd']);
  });

  test('cluster removal takes the cluster and its listener out of the maps', async () => {
    const idB = (await maps()).clusters.find((c) => c.name === B)?.id;
    assert.ok(idB !== undefined);
    server.set(TYPE.cluster, [cluster({ name: A, lbPolicy: 'random' })]);
    await server.waitAck(TYPE.cluster);
    const m = await until('cluster B swept from the map', async () => {
      const m = await maps();
      return m.clusters.some((c) => c.id === idB) ? undefined : m;
    });
    assert.equal(listenerAt(m, VIP_B, 9081), undefined);
    assert.ok(listenerAt(m, VIP_A, 9080));
    const [r] = await dialFrom(cg.path, 'tcp', VIP_B, 9081, 1);
    assert.equal(r?.error, 'ECONNREFUSED');
  });

  test('invalid resource → NACK with a useful message; maps unchanged; traffic unchanged', async () => {
    const before = await live();
    const good = server.version(TYPE.endpoint);
    server.set(TYPE.endpoint, [loadAssignment(A, [{ address: 'svc-a.example', port: 22001 }])]);
    const nack = await server.waitFor(
      (r) =>
        r.kind === 'nack' && r.typeUrl === TYPE.endpoint && r.errorDetail?.message.includes('svc-a.example') === true,
    );
    assert.equal(nack.versionInfo, good);
    assert.match(
      nack.errorDetail?.message ?? '',
      /load assignment outbound\|9080\|\|svc-a\.default\.svc\.cluster\.local: endpoint address "svc-a\.example" is not an IP literal/,
    );
    // One the daemon refuses (its own model rule) is NACKed with the daemon's words.
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22002, 5_000_000)])]);
    const nack2 = await server.waitFor(
      (r) => r.kind === 'nack' && r.errorDetail?.message.includes('rejected by the daemon') === true,
    );
    assert.match(nack2.errorDetail?.message ?? '', /weight: must be an integer 1\.\.1000000, got 5000000/);
    assert.deepEqual(await live(), before);
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 20)), new Set(['b', 'c']));
    assert.match(client.stats().lastError ?? '', /EDS NACK/);
  });

  test('server restart → reconnect and re-subscribe with last versions; traffic flows meanwhile', async () => {
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22002), ep(22003)])]);
    await server.waitAck(TYPE.endpoint);
    const acked = server.version(TYPE.endpoint);
    const resources: Record<string, Res[]> = {};
    await server.stop();
    await until('disconnected', () => (mesh.daemon.status().xdsConnected ? undefined : true));
    const before = await live();
    assert.deepEqual(new Set(await replies(VIP_A, 9080, 10)), new Set(['b', 'c']), 'traffic follows the last config');
    server = new XdsTestServer('w');
    await server.start(port);
    resources.cds = [cluster({ name: A, lbPolicy: 'random' })];
    server.set(TYPE.cluster, resources.cds);
    server.set(TYPE.endpoint, [loadAssignment(A, [ep(22001)])]);
    server.set(TYPE.listener, [tcpListener(VIP_A, 9080, A)]);
    const sub = await server.waitFor((r) => r.typeUrl === TYPE.endpoint && r.kind === 'initial', 15_000);
    assert.deepEqual(sub.resourceNames, [A]);
    assert.equal(sub.versionInfo, acked, 're-subscribed with the last ACKed version');
    await until('reconnected', () => (mesh.daemon.status().xdsConnected ? true : undefined));
    await until('new endpoints', async () => (endpointsOf(await maps(), A)?.join() === '22001/1' ? true : undefined));
    assert.notDeepEqual(await live(), before);
    assert.deepEqual(await replies(VIP_A, 9080, 5), ['a', 'a', 'a', 'a', 'a']);
  });

  test('server gone for good → traffic still flows on the last applied config', async () => {
    const before = await live();
    await server.stop();
    await until('disconnected', () => (mesh.daemon.status().xdsConnected ? undefined : true));
    await new Promise((r) => setTimeout(r, 1500)); // several reconnect attempts fail meanwhile
    assert.equal(client.connected, false);
    assert.deepEqual(await live(), before);
    assert.deepEqual(await replies(VIP_A, 9080, 5), ['a', 'a', 'a', 'a', 'a']);
  });
});
