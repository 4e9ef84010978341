/**
 * Absurd sizes on the real kernel: 100,000 endpoints and 10,000 listeners apply; a
 * config over a map's capacity is refused as CapacityExceeded and leaves the live maps
 * (and traffic through them) exactly as they were — never half-applied.
 * Ports 24000-24999, VIPs in 127.30.0.0/16, a test-made cgroup only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { readActiveSlot } from '../../src/controller/map-dump.js';
import { encodeAddr } from '../../src/model/address.js';
import type { Listener, MeshModel } from '../../src/model/types.js';
import type { BpfMap } from '../../src/runtime/bpf-map.js';
import { clusterKey, IPPROTO_TCP, listenerKey, MAX_ENDPOINTS, MAX_LISTENERS } from '../../src/runtime/maps/layouts.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { configWithPinDir, startTestDaemon, type TestDaemon } from './support/daemon.js';
import { type Backends, dialFrom, tcpBackends } from './support/peers.js';

const VIP_PORT = 24000;
const PROBE_PORT = 24999;
const LISTENERS = 10_000;
const ENDPOINTS = 100_000;

/** 127.30.0.1 … for listener i of the TOML. */
const vip = (i: number) => `127.30.${(i + 1) >> 8}.${(i + 1) & 255}`;
/** 127.0.x.y, ports from 24100: distinct (address, port) for up to 16.7M endpoints. */
const endpoint = (i: number) => ({ address: `127.0.${(i >> 8) & 255}.${i & 255}`, port: 24100 + (i >> 16) });

function bigToml(cgroup: string, endpoints: number): string {
  const lines = [
    '[[services]]',
    `cgroup = "${cgroup}"`,
    '',
    '[[clusters]]',
    'name = "probe"',
    `endpoints = [ { address = "127.0.0.1", port = ${PROBE_PORT} } ]`,
    '',
    '[[clusters]]',
    'name = "big"',
    'lb_policy = "random"',
    'endpoints = [',
  ];
  for (let i = 0; i < endpoints; i++) {
    const e = endpoint(i);
    lines.push(`  { address = "${e.address}", port = ${e.port} },`);
  }
  lines.push(']', '');
  for (let i = 0; i < LISTENERS; i++) {
    lines.push(
      '[[listeners]]',
      `name = "l${i}"`,
      `address = "${vip(i)}"`,
      `port = ${VIP_PORT}`,
      // the first VIP leads to the one live backend; the others to the big cluster
      `cluster = "${i === 0 ? 'probe' : 'big'}"`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function countKeys(map: BpfMap): number {
  let n = 0;
  for (const _ of map.keys()) n++;
  return n;
}

/** Entries of the config the kernel reads (listener and cluster maps hold one config per slot). */
function countLive(map: BpfMap, daemon: TestDaemon['daemon']): number {
  const slot = readActiveSlot(daemon.maps);
  const slotOf =
    map === daemon.maps.listeners
      ? (k: Buffer) => listenerKey.decode(k).slot
      : (k: Buffer) => clusterKey.decode(k).slot;
  let n = 0;
  for (const key of map.keys()) if (slotOf(key) === slot) n++;
  return n;
}

const ms = (start: bigint) => Number(process.hrtime.bigint() - start) / 1e6;

async function assertCapacityExceeded(action: () => Promise<unknown>, pattern: RegExp): Promise<void> {
  await assert.rejects(action, (err: unknown) => {
    assert.ok(err instanceof KmeshError, `expected KmeshError, got ${String(err)}`);
    assert.equal(err.code, 'CapacityExceeded', err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

test('capacity: 100k endpoints and 10k listeners apply; over capacity is refused whole', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-capacity-'));
  const configPath = join(dir, 'kmesh.toml');
  let cgroup: TestCgroup | undefined;
  let backends: Backends | undefined;
  let td: TestDaemon | undefined;
  t.after(async () => {
    try {
      await td?.destroy();
    } finally {
      cgroup?.remove();
      await backends?.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  cgroup = makeCgroup('capacity');
  backends = await tcpBackends([{ name: 'probe', host: '127.0.0.1', port: PROBE_PORT }]);
  const source = bigToml(cgroup.path, ENDPOINTS);

  /** The state the refused applies must leave untouched. */
  const assertUnchanged = async (daemon: TestDaemon['daemon']) => {
    const status = daemon.status();
    assert.equal(status.listeners, LISTENERS);
    assert.equal(status.clusters, 2);
    assert.equal(status.endpoints, ENDPOINTS + 1);
    assert.equal(countLive(daemon.maps.listeners, daemon), LISTENERS);
    assert.equal(countLive(daemon.maps.clusters, daemon), 2);
    assert.equal(countKeys(daemon.maps.endpoints), ENDPOINTS + 1);
    const results = await dialFrom(cgroup?.path ?? null, 'tcp', vip(0), VIP_PORT, 3);
    assert.deepEqual(
      results,
      Array.from({ length: 3 }, () => ({ reply: 'probe', peer: `${vip(0)}:${VIP_PORT}` })),
    );
  };

  await t.test('(a) one cluster of 100,000 endpoints and 10,000 listeners apply', async (t) => {
    writeFileSync(configPath, source);
    const parseStarted = process.hrtime.bigint();
    parseConfig(configWithPinDir(source, '/sys/fs/bpf/kmesh-unused'), configPath);
    t.diagnostic(`parse + validate of the TOML alone: ${ms(parseStarted).toFixed(0)} ms`);
    const started = process.hrtime.bigint();
    td = await startTestDaemon('capacity', source, configPath);
    t.diagnostic(
      `start with ${ENDPOINTS} endpoints and ${LISTENERS} listeners (parse + load + apply): ${ms(started).toFixed(0)} ms`,
    );
    const { daemon } = td;
    const status = daemon.status();
    assert.equal(status.configVersion, 1);
    assert.equal(status.listeners, LISTENERS);
    assert.equal(status.endpoints, ENDPOINTS + 1);
    assert.equal(countKeys(daemon.maps.endpoints), ENDPOINTS + 1);
    assert.equal(countLive(daemon.maps.listeners, daemon), LISTENERS);
    // the last listener is in the map, pointing at "big"
    assert.notEqual(
      daemon.maps.listeners.lookup(
        listenerKey.encode({
          addr: encodeAddr(vip(LISTENERS - 1)),
          port: VIP_PORT,
          protocol: IPPROTO_TCP,
          slot: readActiveSlot(daemon.maps),
        }),
      ),
      null,
    );
    await assertUnchanged(daemon);
  });

  await t.test('(b) 20,000 more listeners over xDS are refused; the maps are unchanged', async (t) => {
    assert.ok(td, 'daemon from (a)');
    const { daemon } = td;
    const listeners: Listener[] = Array.from({ length: 20_000 }, (_, i) => ({
      name: `x${i}`,
      address: `127.30.${100 + (i >> 8)}.${i & 255}`,
      port: VIP_PORT,
      protocol: 'tcp',
      routes: [{ cluster: 'probe', weight: 1 }],
      source: 'xds',
    }));
    const xds: MeshModel = { clusters: [], listeners };
    const started = process.hrtime.bigint();
    await assertCapacityExceeded(
      () => daemon.applyXds(xds),
      new RegExp(`^${LISTENERS + 20_000} listeners exceed the listener map capacity of ${MAX_LISTENERS}$`),
    );
    t.diagnostic(`refused in ${ms(started).toFixed(0)} ms`);
    assert.equal(daemon.status().configVersion, 1);
    assert.equal(
      daemon.maps.listeners.lookup(
        listenerKey.encode({ addr: encodeAddr('127.30.100.0'), port: VIP_PORT, protocol: IPPROTO_TCP, slot: 0 }),
      ),
      null,
    );
    assert.equal(
      daemon.maps.listeners.lookup(
        listenerKey.encode({ addr: encodeAddr('127.30.100.0'), port: VIP_PORT, protocol: IPPROTO_TCP, slot: 1 }),
      ),
      null,
    );
    await assertUnchanged(daemon);
  });

  await t.test('(c) a reload swapping in 170,000 endpoints while 100,000 are live is refused', async (t) => {
    assert.ok(td, 'daemon from (a)');
    const { daemon } = td;
    // 170,001 alone would fit in 262,144; live + new during the swap (270,001) does not.
    assert.ok(170_001 < MAX_ENDPOINTS && ENDPOINTS + 1 + 170_000 > MAX_ENDPOINTS);
    writeFileSync(configPath, configWithPinDir(bigToml(cgroup?.path ?? '', 170_000), td.pinDir));
    const started = process.hrtime.bigint();
    await assertCapacityExceeded(
      () => daemon.reload(),
      new RegExp(
        `^${ENDPOINTS + 1 + 170_000} endpoint entries \\(live \\+ being replaced\\) exceed the endpoint map capacity of ${MAX_ENDPOINTS}$`,
      ),
    );
    t.diagnostic(`refused in ${ms(started).toFixed(0)} ms`);
    assert.equal(daemon.status().configVersion, 1);
    assert.equal(daemon.status().state, 'running');
    assert.equal(daemon.currentConfig.model.clusters.find((c) => c.name === 'big')?.endpoints.length, ENDPOINTS);
    await assertUnchanged(daemon);
  });

  await t.test('(d) a swap to 140,000 endpoints fits (old + new = 240,001) and applies', async (t) => {
    assert.ok(td, 'daemon from (a)');
    const { daemon } = td;
    writeFileSync(configPath, configWithPinDir(bigToml(cgroup?.path ?? '', 140_000), td.pinDir));
    const started = process.hrtime.bigint();
    assert.equal(await daemon.reload(), 2);
    t.diagnostic(`reload to 140,000 endpoints applied in ${ms(started).toFixed(0)} ms`);
    assert.equal(daemon.status().endpoints, 140_001);
    // both generations are in the map until the grace period has passed
    assert.equal(countKeys(daemon.maps.endpoints), ENDPOINTS + 1 + 140_000);
    const results = await dialFrom(cgroup?.path ?? null, 'tcp', vip(0), VIP_PORT, 1);
    assert.deepEqual(results, [{ reply: 'probe', peer: `${vip(0)}:${VIP_PORT}` }]);
    const deadline = Date.now() + 10_000;
    while (countKeys(daemon.maps.endpoints) !== 140_001 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.equal(countKeys(daemon.maps.endpoints), 140_001);
  });

  await t.test(
    '(e) swapping 10,000 xDS clusters for 10,000 others is refused, naming a count over the capacity',
    async () => {
      assert.ok(td, 'daemon from (a)');
      const { daemon } = td;
      const clusters = (prefix: string): MeshModel['clusters'] =>
        Array.from({ length: 10_000 }, (_, i) => ({
          name: `${prefix}${i}`,
          lbPolicy: 'round_robin',
          endpoints: [{ address: '127.0.0.1', port: PROBE_PORT, weight: 1 }],
          source: 'xds',
        }));
      await daemon.applyXds({ clusters: clusters('a'), listeners: [] });
      assert.equal(daemon.status().clusters, 10_002);
      // live 10,002 + 10,000 new before the old ones are retired: 20,002 entries > 16,384
      await assert.rejects(
        () => daemon.applyXds({ clusters: clusters('b'), listeners: [] }),
        (err: unknown) => {
          assert.ok(err instanceof KmeshError, String(err));
          assert.equal(err.code, 'CapacityExceeded', err.message);
          const stated = Number(
            /^(\d+) cluster entries \(live, new and being removed\) exceed the cluster map capacity of 16384/.exec(
              err.message,
            )?.[1],
          );
          assert.ok(
            stated > 16384,
            `the message states ${stated} clusters, which is within the capacity: ${err.message}`,
          );
          return true;
        },
      );
      assert.equal(daemon.status().clusters, 10_002);
      assert.equal(countLive(daemon.maps.clusters, daemon), 10_002);
    },
  );

  await t.test(
    '(f) an over-capacity apply within the grace period is refused and leaves no stray entries',
    async (t) => {
      assert.ok(td, 'daemon from (a)');
      const { daemon } = td;
      const clusters = Array.from({ length: 10_000 }, (_, i) => ({
        name: `c${i}`,
        lbPolicy: 'round_robin' as const,
        endpoints: [{ address: '127.0.0.1', port: PROBE_PORT, weight: 1 }],
        source: 'xds' as const,
      }));
      // drop the 10,000 xDS clusters of (e): their entries stay in the maps for the grace period
      await daemon.applyXds({ clusters: [], listeners: [] });
      assert.equal(daemon.status().clusters, 2);
      // 10,000 others at once: the map still holds the retired ones, so this cannot fit
      await assert.rejects(
        () => daemon.applyXds({ clusters, listeners: [] }),
        (err: unknown) => {
          assert.ok(err instanceof KmeshError, String(err));
          assert.equal(err.code, 'CapacityExceeded', err.message);
          t.diagnostic(`refused: ${err.message}`);
          return true;
        },
      );
      assert.equal(daemon.status().clusters, 2);
      const deadline = Date.now() + 10_000;
      const settled = () =>
        countKeys(daemon.maps.clusters) === 4 &&
        countKeys(daemon.maps.endpoints) === 140_001 &&
        countKeys(daemon.maps.roundRobin) === 2;
      while (!settled() && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      assert.equal(countLive(daemon.maps.clusters, daemon), 2, 'cluster entries after the grace period');
      assert.equal(countKeys(daemon.maps.clusters), 4, 'both slots hold the same config after the grace period');
      assert.equal(countKeys(daemon.maps.endpoints), 140_001, 'endpoint entries after the grace period');
      assert.equal(countKeys(daemon.maps.roundRobin), 2, 'round-robin cursors after the grace period');
      const results = await dialFrom(cgroup?.path ?? null, 'tcp', vip(0), VIP_PORT, 1);
      assert.deepEqual(results, [{ reply: 'probe', peer: `${vip(0)}:${VIP_PORT}` }]);
    },
  );
});
