/**
 * Real kernel: connections made by a process in a registered (test-created) cgroup
 * are counted exactly, with one access-log record each while the log is on;
 * connections from an unregistered cgroup are not seen.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmdirSync } from 'node:fs';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { ConnEvent } from '../../src/probe/event-codec.js';
import { CgroupLinks } from '../../src/runtime/cgroup-links.js';
import { cgroup2View } from '../../src/runtime/cgroup2.js';
import {
  counterTotal,
  exchangeBackend,
  exchangeClient,
  inCgroupScript,
  makeProbeRig,
  type ProbeRig,
  REPLY,
  runChild,
  SEND,
  waitFor,
} from './probe-harness.js';

const N = 20;

let rig: ProbeRig;
let backend: Server;
let port: number;
const events: ConnEvent[] = [];

before(async () => {
  // access log on: the kernel keeps per-socket timing state (the other mode is tested below)
  rig = makeProbeRig('conn', { onEvent: (ev) => events.push(ev), accessLog: true });
  ({ server: backend, port } = await exchangeBackend());
});

after(async () => {
  await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
  rig?.close();
});

test('N connections from the registered cgroup (access log on): opened = closed = N, bytes exact, one record each', async () => {
  const res = await runChild(inCgroupScript(rig.cgroups.attached, exchangeClient(port, N)));
  assert.equal(res.code, 0, res.stderr);
  await waitFor(
    'close events',
    async () => (await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total')) >= N,
  );
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), N);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total'), N);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_sent_bytes_total'), N * SEND);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_received_bytes_total'), N * REPLY);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_failed_total'), 0);

  const text = await rig.registry.getSingleMetricAsString('kmesh_tcp_connections_closed_total');
  assert.match(
    text,
    new RegExp(
      `kmesh_tcp_connections_closed_total\\{reporter="source",source_workload="probe-test.service",destination_service="unknown",destination_address="127.0.0.1:${port}",destination_cluster="unknown"\\} ${N}`,
    ),
  );
  // the counters are the kernel's own; the records come through the ring buffer
  await waitFor('close records', () => rig.probe.drain() >= 0 && events.length >= N);
  const closes = events.filter((e) => e.kind === 'close');
  assert.equal(closes.length, N);
  for (const ev of closes) {
    assert.equal(ev.cgroupId, rig.attachedId);
    assert.equal(ev.remotePort, port);
    assert.ok(ev.durationNs > 0n);
    assert.ok(ev.srttUs > 0, 'loopback RTT is small but measured');
    assert.equal(ev.bytesSent, BigInt(SEND));
    assert.equal(ev.bytesReceived, BigInt(REPLY));
  }
  assert.equal(new Set(closes.map((e) => e.cookie)).size, N, 'one record per connection');
  // RTT and retransmits: the counters add up exactly what the records carry
  const srttSum = closes.reduce((sum, e) => sum + e.srttUs, 0);
  assert.ok(srttSum > 0);
  const srttSeconds = await counterTotal(rig.registry, 'kmesh_tcp_srtt_seconds_total');
  assert.ok(Math.abs(srttSeconds * 1e6 - srttSum) < 1e-3, `${srttSeconds} s vs ${srttSum} µs`);
  assert.equal(
    await counterTotal(rig.registry, 'kmesh_tcp_retransmitted_segments_total'),
    closes.reduce((sum, e) => sum + e.retransmits, 0),
  );
  assert.equal(await counterTotal(rig.registry, 'kmesh_probe_access_records_total'), N);
  assert.equal(rig.probe.drops(), 0n);
});

test('with the access log off the counts and bytes are the same and the kernel queues no records', async () => {
  rig.probe.setAccessLog(false);
  try {
    const before = {
      opened: await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'),
      closed: await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total'),
      sent: await counterTotal(rig.registry, 'kmesh_tcp_sent_bytes_total'),
      received: await counterTotal(rig.registry, 'kmesh_tcp_received_bytes_total'),
    };
    const seen = events.length;
    const res = await runChild(inCgroupScript(rig.cgroups.attached, exchangeClient(port, N)));
    assert.equal(res.code, 0, res.stderr);
    await waitFor(
      'close events',
      async () => (await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total')) >= before.closed + N,
    );
    assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), before.opened + N);
    assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total'), before.closed + N);
    assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_sent_bytes_total'), before.sent + N * SEND);
    assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_received_bytes_total'), before.received + N * REPLY);
    rig.probe.drain();
    assert.equal(events.length, seen);
  } finally {
    rig.probe.setAccessLog(true);
  }
});

test('refused connects are counted as failed, not opened', async () => {
  // a port with no listener: bind-and-close leaves it free
  const probePort = await new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const before = await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total');
  const body = `
for (let i = 0; i < 5; i++) {
  await new Promise((resolve) => {
    const s = net.connect(${probePort}, '127.0.0.1');
    s.on('error', resolve);
    s.on('connect', () => { s.destroy(); resolve(); });
  });
}`;
  const res = await runChild(inCgroupScript(rig.cgroups.attached, body));
  assert.equal(res.code, 0, res.stderr);
  await waitFor(
    'failed events',
    async () => (await counterTotal(rig.registry, 'kmesh_tcp_connections_failed_total')) >= 5,
  );
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_failed_total'), 5);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), before);
  const failedRecords = (): number => events.filter((e) => e.kind === 'failed' && e.remotePort === probePort).length;
  await waitFor('failed records', () => rig.probe.drain() >= 0 && failedRecords() >= 5);
  assert.equal(failedRecords(), 5);
});

test('connections from an unregistered cgroup are not seen', async () => {
  rig.probe.drain();
  const before = events.length;
  const opened = await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total');
  const res = await runChild(inCgroupScript(rig.cgroups.plain, exchangeClient(port, 5)));
  assert.equal(res.code, 0, res.stderr);
  await new Promise((r) => setTimeout(r, 200));
  rig.probe.drain();
  assert.equal(events.length, before);
  assert.equal(await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'), opened);
});

test('IPv6 connections are counted with a bracketed address', async () => {
  const v6 = createServer((sock) => {
    sock.on('data', () => {});
    sock.on('end', () => sock.end('six'));
  });
  await new Promise<void>((r) => v6.listen(0, '::1', r));
  const v6port = (v6.address() as AddressInfo).port;
  try {
    const body = `
for (let i = 0; i < 3; i++) await new Promise((resolve, reject) => {
  const c = net.connect(${v6port}, '::1', () => c.end('hello6'));
  c.on('data', () => {}); c.on('close', resolve); c.on('error', reject);
});`;
    const res = await runChild(inCgroupScript(rig.cgroups.attached, body));
    assert.equal(res.code, 0, res.stderr);
    const series = `destination_address="[::1]:${v6port}",destination_cluster="unknown"}`;
    let text = '';
    await waitFor('v6 close series', async () => {
      text = await rig.registry.metrics();
      return text.includes(
        `kmesh_tcp_connections_closed_total{reporter="source",source_workload="probe-test.service",destination_service="unknown",${series} 3`,
      );
    });
    assert.ok(
      text.includes(
        `kmesh_tcp_sent_bytes_total{reporter="source",source_workload="probe-test.service",destination_service="unknown",${series} 18`,
      ),
    );
    assert.ok(
      text.includes(
        `kmesh_tcp_received_bytes_total{reporter="source",source_workload="probe-test.service",destination_service="unknown",${series} 9`,
      ),
    );
  } finally {
    await new Promise<void>((r) => v6.close(() => r()));
  }
});

test('a registration nested inside another: each connection is counted once, for the inner one', async () => {
  const inner = join(rig.cgroups.attached, 'inner');
  mkdirSync(inner);
  const links = new CgroupLinks(join(rig.pinDir, 'links-inner'), cgroup2View());
  let innerId: bigint | undefined;
  try {
    innerId = links.attach(inner, [rig.program]);
    rig.probe.syncCgroups();
    for (const accessLog of [false, true]) {
      rig.probe.setAccessLog(accessLog);
      const opened = await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total');
      const closed = await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total');
      const res = await runChild(inCgroupScript(inner, exchangeClient(port, 5)));
      assert.equal(res.code, 0, res.stderr);
      await waitFor(
        'close counts',
        async () => (await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total')) >= closed + 5,
      );
      await new Promise((r) => setTimeout(r, 100)); // a double count would have landed by now
      assert.equal(
        await counterTotal(rig.registry, 'kmesh_tcp_connections_opened_total'),
        opened + 5,
        `log ${accessLog}`,
      );
      assert.equal(
        await counterTotal(rig.registry, 'kmesh_tcp_connections_closed_total'),
        closed + 5,
        `log ${accessLog}`,
      );
    }
    const text = await rig.registry.getSingleMetricAsString('kmesh_tcp_connections_opened_total');
    assert.match(text, new RegExp(`source_workload="cgroup:${innerId}".*\\} 10$`, 'm'));
  } finally {
    rig.probe.setAccessLog(true);
    if (innerId !== undefined) links.detach(innerId);
    rmdirSync(inner);
  }
});
