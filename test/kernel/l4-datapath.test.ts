/**
 * The L4 data path on the real kernel: programs attached to a cgroup this test made,
 * real sockets on loopback, assertions on what the kernel did with them.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodeAddr, encodeAddr } from '../../src/model/address.js';
import { BpfMap } from '../../src/runtime/bpf-map.js';
import { epOriginKey, sockOrigin } from '../../src/runtime/maps/layouts.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';
import { type Backends, count, dialFrom, echoBackend, holdFrom, tcpBackends, udpBackends } from './support/peers.js';

const CONFIG = (cgroup: string) => `
[[services]]
cgroup = "${cgroup}"

[[clusters]]
name = "rr"
lb_policy = "round_robin"
endpoints = [
  { address = "127.0.0.1", port = 21001 },
  { address = "127.0.0.1", port = 21002 },
  { address = "127.0.0.1", port = 21003 },
]

[[clusters]]
name = "weighted"
lb_policy = "random"
endpoints = [ { address = "127.0.0.1", port = 21001, weight = 1 }, { address = "127.0.0.1", port = 21002, weight = 3 } ]

[[clusters]]
name = "v1"
endpoints = [ { address = "127.0.0.1", port = 21001 } ]

[[clusters]]
name = "v2"
endpoints = [ { address = "127.0.0.1", port = 21002 } ]

[[clusters]]
name = "v6"
endpoints = [ { address = "::1", port = 21011 } ]

[[clusters]]
name = "solo"
endpoints = [ { address = "127.0.0.1", port = 21004 } ]

[[clusters]]
name = "udp"
lb_policy = "round_robin"
endpoints = [ { address = "127.0.0.1", port = 21021 }, { address = "127.0.0.1", port = 21022 } ]

[[listeners]]
name = "rr"
address = "127.10.0.1"
port = 9080
cluster = "rr"

[[listeners]]
name = "weighted"
address = "127.10.0.2"
port = 9080
cluster = "weighted"

[[listeners]]
name = "gray"
address = "127.10.0.3"
port = 9080
weighted_clusters = [ { cluster = "v1", weight = 90 }, { cluster = "v2", weight = 10 } ]

[[listeners]]
name = "v6"
address = "::1"
port = 21010
cluster = "v6"

[[listeners]]
name = "wildcard"
address = "0.0.0.0"
port = 21030
cluster = "v2"

[[listeners]]
name = "solo"
address = "127.10.0.6"
port = 9080
cluster = "solo"

[[listeners]]
name = "udp"
address = "127.10.0.4"
port = 5353
protocol = "udp"
cluster = "udp"
`;

/** |observed - expected| within 5 standard deviations of a binomial count: fails on a wrong split, not on noise. */
function assertShare(observed: number, total: number, p: number, label: string): void {
  const sigma = Math.sqrt(total * p * (1 - p));
  assert.ok(
    Math.abs(observed - total * p) <= 5 * sigma,
    `${label}: ${observed}/${total} is not within 5σ of the configured share ${p}`,
  );
}

describe('L4 data path (real kernel)', () => {
  let cg: TestCgroup;
  let mesh: TestDaemon;
  let backends: Backends[] = [];

  before(async () => {
    cg = makeCgroup('l4');
    backends = [
      await tcpBackends([
        { name: 'a', host: '127.0.0.1', port: 21001 },
        { name: 'b', host: '127.0.0.1', port: 21002 },
        { name: 'c', host: '127.0.0.1', port: 21003 },
        { name: 'six', host: '::1', port: 21011 },
      ]),
      await echoBackend('solo', '127.0.0.1', 21004),
      await udpBackends([
        { name: 'u1', host: '127.0.0.1', port: 21021 },
        { name: 'u2', host: '127.0.0.1', port: 21022 },
      ]),
    ];
    mesh = await startTestDaemon('l4', CONFIG(cg.path));
  });

  after(async () => {
    await mesh?.destroy();
    for (const b of backends) await b.close();
    cg?.remove();
  });

  test('TCP v4: a connect to the VIP reaches an endpoint and getpeername shows the VIP', async () => {
    const [result] = await dialFrom(cg.path, 'tcp', '127.10.0.1', 9080, 1);
    assert.ok(['a', 'b', 'c'].includes(result?.reply ?? ''), `reply ${JSON.stringify(result)}`);
    assert.equal(result?.peer, '127.10.0.1:9080');
  });

  test('an unregistered process is untouched', async () => {
    const [result] = await dialFrom(null, 'tcp', '127.10.0.1', 9080, 1);
    assert.equal(result?.error, 'ECONNREFUSED');
  });

  test('round robin follows the configured order exactly', async () => {
    const replies = (await dialFrom(cg.path, 'tcp', '127.10.0.1', 9080, 30)).map((r) => r.reply);
    const start = ['a', 'b', 'c'].indexOf(replies[0] ?? '');
    assert.ok(start >= 0, `first reply ${replies[0]}`);
    const expected = replies.map((_, i) => ['a', 'b', 'c'][(start + i) % 3]);
    assert.deepEqual(replies, expected);
  });

  test('endpoint weights 1:3 hold over 2,000 connections', async () => {
    const tally = count(await dialFrom(cg.path, 'tcp', '127.10.0.2', 9080, 2000));
    assert.equal((tally.get('a') ?? 0) + (tally.get('b') ?? 0), 2000, JSON.stringify([...tally]));
    assertShare(tally.get('b') ?? 0, 2000, 0.75, 'weight-3 endpoint');
  });

  test('weighted clusters 90/10 (gray release) hold over 2,000 connections', async () => {
    const tally = count(await dialFrom(cg.path, 'tcp', '127.10.0.3', 9080, 2000));
    assert.equal((tally.get('a') ?? 0) + (tally.get('b') ?? 0), 2000, JSON.stringify([...tally]));
    assertShare(tally.get('b') ?? 0, 2000, 0.1, 'v2 share');
  });

  test('TCP v6: [::1] listener steers to a v6 endpoint; getpeername shows the dialled address', async () => {
    const [result] = await dialFrom(cg.path, 'tcp', '::1', 21010, 1);
    assert.equal(result?.reply, 'six');
    assert.equal(result?.peer, '::1:21010');
  });

  test('TCP v4-mapped: a v6 socket dialling ::ffff:127.10.0.1 is steered like v4', async () => {
    const [result] = await dialFrom(cg.path, 'tcp', '::ffff:127.10.0.1', 9080, 1);
    assert.ok(['a', 'b', 'c'].includes(result?.reply ?? ''), `reply ${JSON.stringify(result)}`);
    assert.equal(result?.peer, '::ffff:127.10.0.1:9080');
  });

  test('a wildcard listener (0.0.0.0:port) catches any address on its port', async () => {
    const [result] = await dialFrom(cg.path, 'tcp', '127.10.9.9', 21030, 1);
    assert.equal(result?.reply, 'b');
  });

  test('closed TCP connections leave no origin behind (kmesh_conn_origin holds live connections only)', async () => {
    const results = await dialFrom(cg.path, 'tcp', '127.10.0.1', 9080, 200);
    assert.ok(
      results.every((r) => r.peer === '127.10.0.1:9080'),
      'getpeername shows the VIP',
    );
    const origins = BpfMap.openPinned(join(mesh.pinDir, 'maps', 'kmesh_conn_origin'));
    try {
      // the close callback runs when the kernel's side of each connection reaches TCP_CLOSE
      for (let i = 0; i < 50 && [...origins.keys()].length > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal([...origins.keys()].length, 0);
    } finally {
      origins.close();
    }
  });

  test('each of several VIPs reaching one endpoint keeps its own name (kmesh_ep_origin names one of them)', async () => {
    // 127.0.0.1:21001 and :21002 are reached through three VIPs: all but one keep a per-connection origin
    for (const vip of ['127.10.0.1', '127.10.0.2', '127.10.0.3']) {
      const results = await dialFrom(cg.path, 'tcp', vip, 9080, 30);
      const wrong = results.filter((r) => r.peer !== `${vip}:9080`);
      assert.equal(wrong.length, 0, `${vip}: ${JSON.stringify(wrong)}`);
    }
  });

  test('a connect straight to an endpoint address is not reported as steered', async () => {
    const [v4] = await dialFrom(cg.path, 'tcp', '127.0.0.1', 21003, 1);
    assert.equal(v4?.reply, 'c');
    assert.equal(v4?.peer, '127.0.0.1:21003');
    const [v6] = await dialFrom(cg.path, 'tcp', '::1', 21011, 1);
    assert.equal(v6?.reply, 'six');
    assert.equal(v6?.peer, '::1:21011');
  });

  test('a plain connection through the VIP its endpoint names keeps nothing per connection', async () => {
    const shared = BpfMap.openPinned(join(mesh.pinDir, 'maps', 'kmesh_ep_origin'));
    const origins = BpfMap.openPinned(join(mesh.pinDir, 'maps', 'kmesh_conn_origin'));
    const held = await holdFrom(cg.path, '127.10.0.6', 9080);
    try {
      assert.equal(await held.roundTrip('x'), 'solo:x');
      // 127.0.0.1:21004 is reached only through the listener 127.10.0.6:9080
      const entry = shared.lookup(epOriginKey.encode({ addr: encodeAddr('127.0.0.1'), port: 21004 }));
      assert.ok(entry, 'kmesh_ep_origin has the endpoint');
      const origin = sockOrigin.decode(entry);
      assert.deepEqual([decodeAddr(origin.vip), origin.vip_port], ['127.10.0.6', 9080]);
      const mine = [...origins.entries()].filter(([, v]) => decodeAddr(v.subarray(0, 16)) === '127.10.0.6');
      assert.equal(mine.length, 0, 'no kmesh_conn_origin entry for the held connection');
      assert.equal(await held.roundTrip('y'), 'solo:y', 'the connection is still open');
    } finally {
      held.close();
      shared.close();
      origins.close();
    }
  });

  test('UDP: request to the VIP reaches endpoints in order and the reply comes from the VIP', async () => {
    const results = await dialFrom(cg.path, 'udp', '127.10.0.4', 5353, 4);
    assert.deepEqual(
      results.map((r) => r.from),
      Array(4).fill('127.10.0.4:5353'),
    );
    const replies = results.map((r) => r.reply);
    assert.deepEqual(new Set(replies), new Set(['u1', 'u2']));
    assert.notEqual(replies[0], replies[1]);
  });
});
