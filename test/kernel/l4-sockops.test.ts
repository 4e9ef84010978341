/**
 * The L4 sockops program is attached only while the config needs it (issue 11): a plain config attaches none (the
 * kernel's own list of the cgroup's programs says so) and getpeername still names each of two VIPs reaching one
 * endpoint; the first cluster with outlier detection attaches it before its config is live, and ejection works;
 * a restarted daemon with a plain config keeps it attached. While it is attached, kmesh-probe finds the origins
 * that live in kmesh_conn_origin (it reads that hash only in this mode). VIPs 127.50.0.x, ports 31001-31004.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { type Parts, startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { decodeAddr } from '../../src/model/address.js';
import { BpfMap } from '../../src/runtime/bpf-map.js';
import { activeSlotKey, l4ModeValue } from '../../src/runtime/maps/layouts.js';
import { waitFor } from './probe-harness.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, testPinDir } from './support/daemon.js';
import { count, dialFrom, echoBackend, holdFrom, tcpBackends } from './support/peers.js';

const EP = '127.50.0.100';
const VIPS = ['127.50.0.1', '127.50.0.2'];
const OD_VIP = '127.50.0.3';

const plain = (cgroup: string) => `
[[services]]
cgroup = "${cgroup}"
[[clusters]]
name = "plain"
endpoints = [ { address = "${EP}", port = 31001 } ]
[[clusters]]
name = "echo"
endpoints = [ { address = "${EP}", port = 31004 } ]
${VIPS.map(
  (vip, i) => `[[listeners]]
name = "vip${i}"
address = "${vip}"
port = 9080
cluster = "plain"
[[listeners]]
name = "echo${i}"
address = "${vip}"
port = 9081
cluster = "echo"
`,
).join('')}`;

// 31003 refuses (nothing listens)
const withOutlier = (cgroup: string) => `${plain(cgroup)}
[[clusters]]
name = "od"
lb_policy = "round_robin"
outlier_detection = { consecutive_failures = 2, base_ejection_time_ms = 30000, max_ejection_percent = 100 }
endpoints = [ { address = "${EP}", port = 31002 }, { address = "${EP}", port = 31003 } ]
[[listeners]]
name = "od"
address = "${OD_VIP}"
port = 9080
cluster = "od"
`;

/** The kernel's view (BPF_PROG_QUERY through bpftool): the cgroup's programs by attach type. */
function attached(cgroup: string): Array<{ type: string; name: string }> {
  const progs = JSON.parse(execFileSync('bpftool', ['cgroup', 'show', cgroup, '-j'], { encoding: 'utf8' })) as Array<{
    attach_type: string;
    name: string;
  }>;
  // bpftool names the types "sock_ops" or (newer) "cgroup_sock_ops"; names may be cut to 15 characters
  return progs.map((p) => ({ type: p.attach_type.replace(/^cgroup_/, ''), name: p.name }));
}

function hasL4Sockops(cgroup: string): boolean {
  const progs = attached(cgroup);
  assert.ok(
    progs.some((p) => p.type === 'inet4_connect' && p.name.startsWith('kmesh_connect4')),
    `connect4 attached: ${JSON.stringify(progs)}`,
  );
  // kmesh-probe's too: once attached later, the L4 program runs after it (which must not matter)
  assert.ok(
    progs.some((p) => p.type === 'sock_ops' && p.name.startsWith('kmesh_probe_soc')),
    `kmesh-probe attached: ${JSON.stringify(progs)}`,
  );
  return progs.some((p) => p.type === 'sock_ops' && p.name.startsWith('kmesh_l4_sock'));
}

function mode(pinDir: string): number {
  const map = BpfMap.openPinned(join(pinDir, 'maps', 'kmesh_l4_mode'));
  try {
    const word = map.lookup(activeSlotKey.encode({ index: 0 }));
    return word ? l4ModeValue.decode(word).mode : 0;
  } finally {
    map.close();
  }
}

/** kmesh_conn_origin entries whose VIP is `vip`. */
function hashEntriesFor(pinDir: string, vip: string): number {
  const map = BpfMap.openPinned(join(pinDir, 'maps', 'kmesh_conn_origin'));
  try {
    return [...map.entries()].filter(([, v]) => decodeAddr(v.subarray(0, 16)) === vip).length;
  } finally {
    map.close();
  }
}

async function assertEachVipNamed(cgroup: string): Promise<void> {
  for (const vip of VIPS) {
    const wrong = (await dialFrom(cgroup, 'tcp', vip, 9080, 20)).filter((r) => r.peer !== `${vip}:9080`);
    assert.deepEqual(wrong, [], `${vip}: getpeername`);
  }
}

/** A kmesh-probe counter summed over the series with this destination_service. */
async function probeCount(parts: Parts, metric: string, service: string): Promise<number> {
  let sum = 0;
  for (const line of (await parts.registry.metrics()).split('\n')) {
    if (line.startsWith(`${metric}{`) && line.includes(`destination_service="${service}"`)) {
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

/**
 * Each VIP's connections (one of them has its own kmesh_conn_origin entry, the endpoint's shared origin names the
 * other) and a direct connect (the marker is in the hash too) are counted under their own name, opened and closed.
 */
async function assertProbeNamesEach(parts: Parts, cgroup: string): Promise<void> {
  const N = 5;
  const series = [...VIPS.map((vip, i) => ({ service: `vip${i}`, vip })), { service: 'unknown', vip: EP }];
  const metrics = ['kmesh_tcp_connections_opened_total', 'kmesh_tcp_connections_closed_total'];
  const before = await Promise.all(series.flatMap((s) => metrics.map((m) => probeCount(parts, m, s.service))));
  for (const s of series) await dialFrom(cgroup, 'tcp', s.vip, s.vip === EP ? 31001 : 9080, N);
  const delta = async () =>
    (await Promise.all(series.flatMap((s) => metrics.map((m) => probeCount(parts, m, s.service))))).map(
      (v, i) => v - (before[i] ?? 0),
    );
  // the closes arrive with the peers' FINs, after the client has gone
  await waitFor('the closes counted', async () => (await delta()).every((d) => d >= N), 3000).catch(() => {});
  assert.deepEqual(
    await delta(),
    series.flatMap(() => metrics.map(() => N)),
    'opened, closed per service',
  );
}

test('L4 sockops: none for a plain config; attached before the first outlier policy is live; kept across a restart', async (t) => {
  const cg = makeCgroup('sockops');
  t.after(() => cg.remove());
  const echo = await echoBackend('e', EP, 31004);
  t.after(() => echo.close());
  const ok = await tcpBackends([
    { name: 'n', host: EP, port: 31001 },
    { name: 'ok', host: EP, port: 31002 },
  ]);
  t.after(() => ok.close());
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-sockops-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'kmesh.toml');
  const pinDir = testPinDir('sockops');
  const logger = pino({ level: 'warn' });
  let running: Parts | undefined;
  // FIFO after the ones above: the daemon stops before its pins go
  t.after(async () => {
    await running?.stop();
    cleanupPins(pinDir);
  });
  const start = async (toml: string) => {
    writeFileSync(path, configWithPinDir(toml, pinDir));
    running = await startParts({ config: parseConfig(configWithPinDir(toml, pinDir), path), logger, pinDir });
    return running;
  };
  const first = await start(plain(cg.path));

  // plain: no L4 sockops in the kernel's list for the cgroup, origins of their own in socket storage
  assert.equal(hasL4Sockops(cg.path), false, 'no L4 sockops for a plain config');
  assert.equal(mode(pinDir), 0);
  await assertEachVipNamed(cg.path);
  await assertProbeNamesEach(first, cg.path);
  const held = await Promise.all(VIPS.map((vip) => holdFrom(cg.path, vip, 9081)));
  t.after(() => {
    for (const h of held) h.close();
  });
  for (const vip of VIPS) assert.equal(hashEntriesFor(pinDir, vip), 0, `${vip}: no kmesh_conn_origin entry`);
  const [direct] = await dialFrom(cg.path, 'tcp', EP, 31001, 1);
  assert.equal(direct?.peer, `${EP}:31001`, 'a direct connect to the endpoint is not taken for a steered one');

  // a cluster with outlier detection: the program is attached (and the mode published) with the config
  writeFileSync(path, configWithPinDir(withOutlier(cg.path), pinDir));
  await first.daemon.reload();
  assert.equal(hasL4Sockops(cg.path), true, 'L4 sockops attached with the outlier policy');
  assert.equal(mode(pinDir), 1);
  await assertProbeNamesEach(first, cg.path);
  const tally = count(await dialFrom(cg.path, 'tcp', OD_VIP, 9080, 200));
  const refused = tally.get('error:ECONNREFUSED') ?? 0;
  assert.ok(refused >= 1 && refused <= 2, `refused connects: ${refused} (${JSON.stringify([...tally])})`);
  const dead = first.daemon.endpointStatus('od').find((e) => e.port === 31003);
  assert.equal(dead?.healthy, false, 'the refusing endpoint is ejected');
  await assertEachVipNamed(cg.path);
  const [directNow] = await dialFrom(cg.path, 'tcp', EP, 31001, 1);
  assert.equal(directNow?.peer, `${EP}:31001`, 'the direct marker, now in kmesh_conn_origin');
  // connections opened before the attach (origins in socket storage) keep their names
  for (const [i, h] of held.entries()) assert.equal(await h.roundTrip(`x${i}`), `e:x${i}`);

  // a restart with a plain config adopts the attachment: live connections may hold entries only it deletes
  await first.stop();
  running = undefined;
  await start(plain(cg.path));
  assert.equal(hasL4Sockops(cg.path), true, 'still attached after the restart');
  assert.equal(mode(pinDir), 1);
  await assertEachVipNamed(cg.path);
});
