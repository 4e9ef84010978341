/**
 * Resilience decided in the kernel (issue 12), on the real kernel: outlier ejection of refusing, resetting and
 * SYN-blackholed endpoints and their return, priority failover with the 1.4 overprovisioning factor and
 * fail-back, locality weights, least request over held connections, consistent hashing, max_connections and a
 * short connect timeout; failover by the daemon's locality, the overprovisioning factor, and a registration nested
 * in another counting once. Ports 34000-34999, VIPs 127.44.x.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { configWithPinDir, startTestDaemon, type TestDaemon } from './support/daemon.js';
import { greetingBackend, replyingBackends, resettingBackend, synBlackhole } from './support/faulty-peers.js';
import { type Backends, count, dialFrom, type HeldConnection, holdFrom } from './support/peers.js';

/** Backends on an address of our range: on 127.0.0.1 the ports of the range are also other sockets' ephemeral ports. */
const L = '127.44.0.100';
/** A registered cgroup inside the registered test cgroup: both attachments' programs see its sockets. */
const NESTED = 'nested';
/** Ejection time where a test waits for the return; elsewhere 30 s, longer than any test's traffic. */
const EJECT_MS = 1500;
const od = (failures: number, percent = 100, ejectMs = 30_000) =>
  `outlier_detection = { consecutive_failures = ${failures}, base_ejection_time_ms = ${ejectMs}, max_ejection_percent = ${percent} }`;
const eps = (list: Array<string | number>) =>
  `[ ${list.map((e) => (typeof e === 'number' ? `{ address = "${L}", port = ${e} }` : e)).join(', ')} ]`;

/** 4 endpoints at priority 0, two of which refuse (34007, 34008); 1 at priority 1. */
const SPILL_ENDPOINTS = eps([34001, 34002, 34007, 34008, `{ address = "${L}", port = 34009, priority = 1 }`]);

function config(cgroup: string, lrEndpoints: number[]): string {
  const clusters: Array<[name: string, vip: string, body: string]> = [
    // 34003 refuses (nothing listens)
    ['refuse', '127.44.0.1', `lb_policy = "round_robin"\n${od(3)}\nendpoints = ${eps([34001, 34002, 34003])}`],
    // 34013 refuses until the test starts it
    [
      'comeback',
      '127.44.0.12',
      `lb_policy = "round_robin"\n${od(2, 100, EJECT_MS)}\nendpoints = ${eps([34001, 34013])}`,
    ],
    ['reset', '127.44.0.2', `lb_policy = "round_robin"\n${od(3)}\nendpoints = ${eps([34001, 34004])}`],
    [
      'blackhole',
      '127.44.0.3',
      `lb_policy = "round_robin"\n${od(2)}\nconnect_timeout_ms = 300\nendpoints = ${eps([34001, 34005])}`,
    ],
    ['slow', '127.44.0.4', `connect_timeout_ms = 300\nendpoints = ${eps([34005])}`],
    [
      'failover',
      '127.44.0.5',
      `${od(2, 100, EJECT_MS)}\nendpoints = ${eps([`{ address = "${L}", port = 34006 }`, `{ address = "${L}", port = 34002, priority = 1 }`])}`,
    ],
    ['spill', '127.44.0.6', `lb_policy = "random"\n${od(1, 50)}\nendpoints = ${SPILL_ENDPOINTS}`],
    [
      'local',
      '127.44.0.7',
      `lb_policy = "random"
locality_weights = [ { locality = "r1/a", weight = 1 }, { locality = "r1/b", weight = 3 } ]
endpoints = ${eps([
        `{ address = "${L}", port = 34001, locality = "r1/a" }`,
        `{ address = "${L}", port = 34002, locality = "r1/b" }`,
        `{ address = "${L}", port = 34009, locality = "r1/b" }`,
      ])}`,
    ],
    ['lr', '127.44.0.8', `lb_policy = "least_request"\nendpoints = ${eps(lrEndpoints)}`],
    ['maglev', '127.44.0.9', `lb_policy = "maglev"\nhash_key = "cgroup"\nendpoints = ${eps([34001, 34002, 34009])}`],
    ['ring', '127.44.0.10', `lb_policy = "ring_hash"\nendpoints = ${eps([34001, 34002, 34009])}`],
    ['capped', '127.44.0.11', `max_connections = 2\nendpoints = ${eps([34012])}`],
    [
      // the daemon is in r1/z1/s1: 34014 (same subzone) first, then 34001 (same zone), then 34002 (elsewhere)
      'byloc',
      '127.44.0.13',
      `lb_policy = "random"\n${od(2, 100, EJECT_MS)}\nendpoints = ${eps([
        `{ address = "${L}", port = 34002, locality = "r2/z9" }`,
        `{ address = "${L}", port = 34001, locality = "r1/z1/s2" }`,
        `{ address = "${L}", port = 34014, locality = "r1/z1/s1" }`,
      ])}`,
    ],
    [
      // as 'byloc', with Istio's failover list: from r1 to r3 first, so 34001 (r3) takes over before 34002 (r2)
      'byregion',
      '127.44.0.17',
      `lb_policy = "random"\n${od(2, 100, EJECT_MS)}\nlocality_failover_regions = [ { from = "r1", to = "r3" } ]
endpoints = ${eps([
        `{ address = "${L}", port = 34002, locality = "r2/z9" }`,
        `{ address = "${L}", port = 34001, locality = "r3/z1" }`,
        `{ address = "${L}", port = 34017, locality = "r1/z1/s1" }`,
      ])}`,
    ],
    [
      // as 'spill', with overprovisioning 1.0
      'spill100',
      '127.44.0.14',
      `lb_policy = "random"\noverprovisioning_factor = 100\n${od(1, 50)}\nendpoints = ${SPILL_ENDPOINTS}`,
    ],
    ['nested', '127.44.0.15', `lb_policy = "least_request"\nmax_connections = 3\nendpoints = ${eps([34015])}`],
    // 34016 refuses
    ['nestedfail', '127.44.0.16', `${od(2)}\nendpoints = ${eps([34016])}`],
  ];
  // The first line lands in the [daemon] table configWithPinDir puts before this text.
  return `locality = "r1/z1/s1"
[[services]]
cgroup = "${cgroup}"
[[services]]
cgroup = "${cgroup}/${NESTED}"
${clusters
  .map(
    ([name, vip, body]) => `
[[clusters]]
name = "${name}"
${body}

[[listeners]]
name = "${name}"
address = "${vip}"
port = 34000
cluster = "${name}"
`,
  )
  .join('')}`;
}

/** |observed - expected| within 5 standard deviations of a binomial count. */
function assertShare(observed: number, total: number, p: number, label: string): void {
  const sigma = Math.sqrt(total * p * (1 - p));
  assert.ok(Math.abs(observed - total * p) <= 5 * sigma, `${label}: ${observed}/${total} is not within 5σ of ${p}`);
}

describe('resilience in the kernel (real kernel)', () => {
  let cg: TestCgroup;
  let other: TestCgroup;
  let mesh: TestDaemon;
  let dir: string;
  let path: string;
  const backends: Backends[] = [];
  const held: HeldConnection[] = [];
  const warnings: string[] = [];

  const named = (ports: number[]) => replyingBackends(ports, L);
  const endpointsOf = (cluster: string) => mesh.daemon.endpointStatus(cluster) ?? assert.fail(`no cluster ${cluster}`);
  const stateOf = (cluster: string, port: number) =>
    endpointsOf(cluster).find((e) => e.port === port) ?? assert.fail(`${cluster} has no endpoint ${port}`);

  before(async () => {
    cg = makeCgroup('resilience');
    mkdirSync(join(cg.path, NESTED));
    other = makeCgroup('resilience-other');
    // Every listener before any client socket of ours exists: ports 34000-34999 are inside the ephemeral range,
    // and a held client socket could otherwise own a port a backend wants later.
    backends.push(await named([34001, 34002, 34009]));
    backends.push(await greetingBackend('a', L, 34010), await greetingBackend('b', L, 34011));
    backends.push(await greetingBackend('capped', L, 34012), await greetingBackend('nested', L, 34015));
    backends.push(await resettingBackend(L, 34004));
    backends.push(await synBlackhole(L, 34005));
    dir = mkdtempSync(join(tmpdir(), 'kmesh-resilience-'));
    path = join(dir, 'kmesh.toml');
    const toml = `${config(cg.path, [34010])}\n[[services]]\ncgroup = "${other.path}"\n`;
    const log = { write: (line: string) => warnings.push(line) };
    mesh = await startTestDaemon('resilience', toml, path, pino({ level: 'warn' }, log));
  });

  after(async () => {
    for (const h of held) h.close();
    await mesh?.destroy();
    for (const b of backends) await b.close();
    if (cg) rmdirSync(join(cg.path, NESTED), { recursive: false });
    cg?.remove();
    other?.remove();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('1,000 connects over 3 endpoints, one refusing: at most consecutive_failures fail, then it is ejected', async () => {
    const tally = count(await dialFrom(cg.path, 'tcp', '127.44.0.1', 34000, 1000));
    const refused = tally.get('error:ECONNREFUSED') ?? 0;
    assert.ok(refused >= 1 && refused <= 3, `refused connects: ${refused} (${JSON.stringify([...tally])})`);
    assert.equal((tally.get('34001') ?? 0) + (tally.get('34002') ?? 0) + refused, 1000);
    const dead = stateOf('refuse', 34003);
    assert.equal(dead.healthy, false);
    assert.ok(dead.ejectedUntil, 'an ejected endpoint says until when');
    assert.equal(dead.timesEjected, 1);
    assert.equal(stateOf('refuse', 34001).healthy, true);
    // the daemon's once-a-second read of the kernel's counters logs the ejection
    for (let i = 0; i < 30 && !warnings.some((l) => l.includes('endpoint ejected')); i++) await sleep(100);
    const logged = warnings.filter((l) => l.includes('endpoint ejected')).map((l) => JSON.parse(l));
    assert.deepEqual(
      logged.map((l) => [l.cluster, l.endpoint]),
      [['refuse', '127.44.0.100:34003']],
    );
  });

  test('the ejected endpoint takes connections again once the ejection time is up', async () => {
    const first = count(await dialFrom(cg.path, 'tcp', '127.44.0.12', 34000, 10));
    assert.equal(first.get('error:ECONNREFUSED'), 2, JSON.stringify([...first]));
    assert.equal(stateOf('comeback', 34013).healthy, false);
    backends.push(await named([34013]));
    await sleep(EJECT_MS + 200);
    const tally = count(await dialFrom(cg.path, 'tcp', '127.44.0.12', 34000, 30));
    assert.ok((tally.get('34013') ?? 0) >= 10, `back in the rotation: ${JSON.stringify([...tally])}`);
    assert.equal(stateOf('comeback', 34013).healthy, true);
  });

  test('a resetting endpoint (RST after the handshake) is ejected after consecutive_failures resets', async () => {
    const results = await dialFrom(cg.path, 'tcp', '127.44.0.2', 34000, 200);
    const tally = count(results);
    const reset = tally.get('error:ECONNRESET') ?? 0;
    // the order of the outcomes and the kernel's counts tell a count started over from an ejection that expired
    const resetAt = results.flatMap((r, i) => (r.error === 'ECONNRESET' ? [i] : []));
    assert.ok(
      reset >= 1 && reset <= 3,
      `reset connects: ${JSON.stringify([...tally])} at ${resetAt}; kernel: ${JSON.stringify(stateOf('reset', 34004))}`,
    );
    assert.equal(stateOf('reset', 34004).healthy, false);
  });

  test('a short connect timeout: a blackholed SYN fails with ETIMEDOUT within the cluster timeout', async () => {
    const started = Date.now();
    const [result] = await dialFrom(cg.path, 'tcp', '127.44.0.4', 34000, 1);
    // without it the kernel retries the SYN for minutes and the client's own 3 s timer fires first
    assert.equal(result?.error, 'ETIMEDOUT', JSON.stringify(result));
    assert.ok(Date.now() - started < 2500, `took ${Date.now() - started} ms`);
    assert.ok(stateOf('slow', 34005).connectTimeoutsTotal >= 1);
  });

  test('a SYN-blackholed endpoint times out twice, is ejected, and the rest is served', async () => {
    const tally = count(await dialFrom(cg.path, 'tcp', '127.44.0.3', 34000, 40));
    const timedOut = tally.get('error:ETIMEDOUT') ?? 0;
    assert.ok(timedOut >= 1 && timedOut <= 2, JSON.stringify([...tally]));
    assert.equal(tally.get('34001'), 40 - timedOut);
    assert.equal(stateOf('blackhole', 34005).healthy, false);
  });

  /** All on `primary` while it serves; on `takeover` once it is dead and ejected; back after the ejection time. */
  async function failoverAndBack(vip: string, primary: number, takeover: number, where: string): Promise<void> {
    const first = await named([primary]);
    let tally = count(await dialFrom(cg.path, 'tcp', vip, 34000, 50));
    assert.deepEqual([...tally], [[String(primary), 50]], `all on ${where} while it is healthy`);
    await first.close();
    tally = count(await dialFrom(cg.path, 'tcp', vip, 34000, 50));
    assert.ok((tally.get('error:ECONNREFUSED') ?? 0) <= 2, JSON.stringify([...tally]));
    assert.ok((tally.get(String(takeover)) ?? 0) >= 48, `failover to ${takeover}: ${JSON.stringify([...tally])}`);
    backends.push(await named([primary]));
    await sleep(EJECT_MS + 200);
    tally = count(await dialFrom(cg.path, 'tcp', vip, 34000, 50));
    assert.deepEqual([...tally], [[String(primary), 50]], `fail-back to ${where}`);
  }

  /** Ejects the refusing priority-0 endpoints 34007 and 34008 (2 of 4), then measures the share on priority 1. */
  async function spillShare(cluster: string, vip: string, expected: number): Promise<void> {
    for (let i = 0; i < 20 && endpointsOf(cluster).filter((e) => !e.healthy).length < 2; i++) {
      await dialFrom(cg.path, 'tcp', vip, 34000, 5);
    }
    assert.deepEqual(
      endpointsOf(cluster)
        .filter((e) => !e.healthy)
        .map((e) => e.port)
        .sort(),
      [34007, 34008],
    );
    const tally = count(await dialFrom(cg.path, 'tcp', vip, 34000, 1000));
    const failed = (tally.get('error:ECONNREFUSED') ?? 0) + (tally.get('error:timeout') ?? 0);
    assert.equal(failed, 0, JSON.stringify([...tally]));
    assertShare(tally.get('34009') ?? 0, 1000, expected, 'share on priority 1');
  }

  test('priority failover: the priority-0 endpoint dies, traffic moves to priority 1, and fails back', () =>
    failoverAndBack('127.44.0.5', 34006, 34002, 'priority 0'));

  // consecutive_failures 1, max 50 % = 2 of 4
  test('overprovisioning 1.4: half of priority 0 ejected keeps 70 % there, 30 % spills to priority 1', () =>
    spillShare('spill', '127.44.0.6', 0.3));

  test('locality weights 1:3 hold over 2,000 connects (the weight-3 locality split over its 2 endpoints)', async () => {
    const tally = count(await dialFrom(cg.path, 'tcp', '127.44.0.7', 34000, 2000));
    assertShare(tally.get('34001') ?? 0, 2000, 0.25, 'locality r1/a');
    assertShare(tally.get('34002') ?? 0, 2000, 0.375, 'locality r1/b, first endpoint');
    assertShare(tally.get('34009') ?? 0, 2000, 0.375, 'locality r1/b, second endpoint');
  });

  test('least request: new connections prefer the endpoint with fewer held connections', async () => {
    for (let i = 0; i < 8; i++) held.push(await holdFrom(cg.path, '127.44.0.8', 34000));
    assert.equal(stateOf('lr', 34010).activeConnections, 8);
    // a second endpoint joins: the count of the first survives the endpoint-set swap
    writeFileSync(
      path,
      configWithPinDir(`${config(cg.path, [34010, 34011])}\n[[services]]\ncgroup = "${other.path}"\n`, mesh.pinDir),
    );
    await mesh.daemon.reload();
    assert.equal(stateOf('lr', 34010).activeConnections, 8);
    // Short connections now: "a" holds 8, "b" about none. Two random picks out of two endpoints choose "b"
    // unless both land on "a": 3/4 of the time, against 1/2 for a random choice.
    const tally = count(await dialFrom(cg.path, 'tcp', '127.44.0.8', 34000, 400));
    assert.equal((tally.get('a') ?? 0) + (tally.get('b') ?? 0), 400, JSON.stringify([...tally]));
    assertShare(tally.get('b') ?? 0, 400, 0.75, 'share of the less loaded endpoint');
    assert.equal(stateOf('lr', 34010).activeConnections, 8);
  });

  test('maglev and ring hash: one workload always lands on the same endpoint', async () => {
    for (const vip of ['127.44.0.9', '127.44.0.10']) {
      const tally = count(await dialFrom(cg.path, 'tcp', vip, 34000, 40));
      assert.equal(tally.size, 1, `${vip}: ${JSON.stringify([...tally])}`);
      const again = count(await dialFrom(cg.path, 'tcp', vip, 34000, 10));
      assert.deepEqual([...again.keys()], [...tally.keys()], `${vip}: stable across processes of the workload`);
    }
  });

  test('max_connections: the third concurrent connection is refused at once and counted as an overflow', async () => {
    const a = await holdFrom(cg.path, '127.44.0.11', 34000);
    const b = await holdFrom(cg.path, '127.44.0.11', 34000);
    held.push(a, b);
    const [third] = await dialFrom(cg.path, 'tcp', '127.44.0.11', 34000, 1);
    assert.equal(third?.error, 'ECONNREFUSED');
    const counters = mesh.daemon.clusterCounters().find((c) => c.cluster === 'capped');
    assert.equal(counters?.overflowsTotal, 1);
    assert.equal(counters?.activeConnections, 2);
    a.close();
    for (
      let i = 0;
      i < 50 && (mesh.daemon.clusterCounters().find((c) => c.cluster === 'capped')?.activeConnections ?? 0) > 1;
      i++
    ) {
      await sleep(20);
    }
    const c = await holdFrom(cg.path, '127.44.0.11', 34000);
    held.push(c);
    assert.equal(await c.roundTrip('hi'), 'capped', 'the connection after the overflow is served');
  });

  test('locality failover: the local endpoint takes all, its zone takes over when it is ejected, and it fails back', () =>
    failoverAndBack('127.44.0.13', 34014, 34001, 'the same subzone'));

  test('locality_failover_regions: the local endpoint ejected, the failover region takes over, not any other', () =>
    failoverAndBack('127.44.0.17', 34017, 34001, 'the local endpoint'));

  test('overprovisioning_factor 100: half of priority 0 ejected sends half to priority 1', () =>
    spillShare('spill100', '127.44.0.14', 0.5));

  test('a registration nested in another counts each connection and each failure once', async () => {
    const inner = join(cg.path, NESTED);
    const a = await holdFrom(inner, '127.44.0.15', 34000);
    const b = await holdFrom(inner, '127.44.0.15', 34000);
    held.push(a, b);
    assert.equal(stateOf('nested', 34015).activeConnections, 2);
    assert.equal(mesh.daemon.clusterCounters().find((c) => c.cluster === 'nested')?.activeConnections, 2);
    // max_connections 3: a third is still under it (counted twice, 2 held would already be 4)
    const c = await holdFrom(inner, '127.44.0.15', 34000);
    held.push(c);
    assert.equal(await c.roundTrip('hi'), 'nested');
    for (const h of [a, b, c]) h.close();
    for (let i = 0; i < 50 && stateOf('nested', 34015).activeConnections > 0; i++) await sleep(20);
    assert.equal(stateOf('nested', 34015).activeConnections, 0);
    const counters = mesh.daemon.clusterCounters().find((x) => x.cluster === 'nested');
    assert.deepEqual([counters?.activeConnections, counters?.overflowsTotal], [0, 0]);
    // one refused connect is one failure: consecutive_failures 2 does not eject yet
    const [refused] = await dialFrom(inner, 'tcp', '127.44.0.16', 34000, 1);
    assert.equal(refused?.error, 'ECONNREFUSED');
    const dead = stateOf('nestedfail', 34016);
    assert.deepEqual([dead.failuresTotal, dead.consecutiveFailures, dead.healthy], [1, 1, true]);
  });
});
