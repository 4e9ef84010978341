/** Kernel counts and records → labels → counters and access-log lines, without a kernel. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { PROBE_EV_CLOSE, PROBE_EV_FAILED, PROBE_F_STEERED } from '../../src/abi/kernel.js';
import { encodeAddr } from '../../src/model/address.js';
import { AccessLog } from '../../src/probe/access-log.js';
import { type ConnCountsSource, ConnectionMetrics } from '../../src/probe/connection-metrics.js';
import { decodeConnKey, decodeEvent, probeConnKey, probeEvent } from '../../src/probe/event-codec.js';
import { type ConnCounts, NO_COUNTS } from '../../src/probe/kernel-state.js';
import { LabelLimiter, labelsOf, type ProbeLookups } from '../../src/probe/labels.js';
import { sockOrigin } from '../../src/runtime/maps/layouts.js';

const lookups: ProbeLookups = {
  workloadOfCgroup: (id) => (id === 42n ? 'orders.service' : undefined),
  listenerOf: (vip, port) => (vip === '127.10.0.5' && port === 9080 ? 'reviews' : undefined),
  clusterNameOf: (id) => (id === 7 ? 'reviews-v1' : undefined),
};

function rawEvent(
  type: number,
  opts: { steered?: boolean; sent?: bigint; received?: bigint; endpointPort?: number } = {},
) {
  const origin = sockOrigin.encode({
    vip: encodeAddr('127.10.0.5'),
    endpoint: encodeAddr('127.0.0.1'),
    vip_port: 9080,
    endpoint_port: opts.endpointPort ?? 9081,
    cluster_id: 7,
  });
  return probeEvent.encode({
    cookie: 99n,
    cgroup_id: 42n,
    duration_ns: 1_500_000n,
    bytes_sent: opts.sent ?? 0n,
    bytes_received: opts.received ?? 0n,
    origin: opts.steered === false ? Buffer.alloc(40) : origin,
    remote: encodeAddr('127.0.0.1'),
    remote_port: opts.endpointPort ?? 9081,
    local_port: 50000,
    srtt_us: 35,
    total_retrans: 0,
    type,
    flags: opts.steered === false ? 0 : PROBE_F_STEERED,
  });
}

test('a steered event decodes to listener/cluster/endpoint labels', () => {
  const ev = decodeEvent(rawEvent(PROBE_EV_CLOSE, { sent: 10n, received: 20n }));
  assert.ok(ev);
  assert.equal(ev.kind, 'close');
  assert.deepEqual(ev.steered, {
    vip: '127.10.0.5',
    vipPort: 9080,
    endpoint: '127.0.0.1',
    endpointPort: 9081,
    clusterId: 7,
  });
  assert.deepEqual(labelsOf(ev, lookups), {
    reporter: 'source',
    source_workload: 'orders.service',
    destination_service: 'reviews',
    destination_address: '127.0.0.1:9081',
    destination_cluster: 'reviews-v1',
  });
});

test('an unsteered event names the peer and "unknown" service; unknown ids fall back to the raw value', () => {
  const ev = decodeEvent(rawEvent(PROBE_EV_FAILED, { steered: false }));
  assert.ok(ev);
  assert.equal(ev.steered, undefined);
  assert.equal(labelsOf(ev, lookups).destination_service, 'unknown');
  assert.equal(labelsOf(ev, { ...lookups, workloadOfCgroup: () => undefined }).source_workload, 'cgroup:42');
  assert.equal(decodeEvent(Buffer.alloc(probeEvent.size)), null, 'type 0 is not an event');
});

/** A kmesh_probe_conns key for cgroup 42: steered to endpoint 127.0.0.1:<endpointPort>, or the peer of that port. */
function connKey(opts: { steered?: boolean; endpointPort?: number; cgroupId?: bigint; vip?: string } = {}): Buffer {
  const steered = opts.steered !== false;
  return probeConnKey.encode({
    cgroup_id: opts.cgroupId ?? 42n,
    origin: steered
      ? sockOrigin.encode({
          vip: encodeAddr(opts.vip ?? '127.10.0.5'),
          endpoint: encodeAddr('127.0.0.1'),
          vip_port: 9080,
          endpoint_port: opts.endpointPort ?? 9081,
          cluster_id: 7,
        })
      : Buffer.alloc(sockOrigin.size),
    remote: steered ? Buffer.alloc(16) : encodeAddr('127.0.0.1'),
    remote_port: steered ? 0 : (opts.endpointPort ?? 9081),
    flags: steered ? PROBE_F_STEERED : 0,
    pad: Buffer.alloc(5),
  });
}

/** The kernel's side in memory: cumulative counts per key, as the per-CPU hash holds them. */
class FakeKernelCounts implements ConnCountsSource {
  readonly rows = new Map<string, { key: Buffer; counts: ConnCounts }>();
  overflowCounts = NO_COUNTS;
  readonly live = new Set<bigint>([42n]);
  removed: Buffer[] = [];

  constructor(readonly capacity = 100) {}

  add(key: Buffer, c: Partial<ConnCounts>): void {
    const id = key.toString('hex');
    const now = this.rows.get(id)?.counts ?? NO_COUNTS;
    const next = { ...now };
    for (const [k, v] of Object.entries(c) as Array<[keyof ConnCounts, number]>) next[k] += v;
    this.rows.set(id, { key, counts: next });
  }

  read() {
    return [...this.rows.values()];
  }

  overflow(): ConnCounts {
    return this.overflowCounts;
  }

  remove(key: Buffer): void {
    this.removed.push(key);
    this.rows.delete(key.toString('hex'));
  }

  liveCgroups(): ReadonlySet<bigint> {
    return this.live;
  }
}

const sumOf = async (registry: Registry, name: string): Promise<number> =>
  ((await registry.getSingleMetric(name)?.get())?.values ?? []).reduce((a, v) => a + v.value, 0);

test("counters: opened, closed, failed and bytes per label set, from the kernel's cumulative counts", async () => {
  const registry = new Registry();
  const kernel = new FakeKernelCounts();
  const metrics = new ConnectionMetrics(registry, lookups, kernel, 10);
  kernel.add(connKey(), { opened: 2, closed: 1, failed: 1, sent: 1000, received: 2000, srttUsSum: 40 });
  metrics.refresh();
  kernel.add(connKey(), { closed: 1, sent: 5, received: 7, retransmits: 2, srttUsSum: 60 });
  const text = await registry.metrics();
  const labels =
    'reporter="source",source_workload="orders.service",destination_service="reviews",destination_address="127.0.0.1:9081",destination_cluster="reviews-v1"';
  assert.match(text, new RegExp(`kmesh_tcp_connections_opened_total\\{${labels}\\} 2\n`));
  assert.match(text, new RegExp(`kmesh_tcp_connections_closed_total\\{${labels}\\} 2\n`));
  assert.match(text, new RegExp(`kmesh_tcp_connections_failed_total\\{${labels}\\} 1\n`));
  assert.match(text, new RegExp(`kmesh_tcp_sent_bytes_total\\{${labels}\\} 1005\n`));
  assert.match(text, new RegExp(`kmesh_tcp_received_bytes_total\\{${labels}\\} 2007\n`));
  assert.match(text, new RegExp(`kmesh_tcp_retransmitted_segments_total\\{${labels}\\} 2\n`));
  assert.match(text, new RegExp(`kmesh_tcp_srtt_seconds_total\\{${labels}\\} 0.0001\n`));
  // a key the kernel lost and re-created starts from zero: its counts are added whole
  kernel.rows.clear();
  kernel.add(connKey(), { opened: 1 });
  metrics.refresh();
  assert.equal(await sumOf(registry, 'kmesh_tcp_connections_opened_total'), 3);
});

test('one scrape reads the kernel once, not once per counter', async () => {
  const registry = new Registry();
  const kernel = new FakeKernelCounts();
  let reads = 0;
  const counting: ConnCountsSource = Object.assign(Object.create(kernel), {
    read: () => {
      reads++;
      return kernel.read();
    },
  });
  new ConnectionMetrics(registry, lookups, counting, 10);
  kernel.add(connKey(), { opened: 1, closed: 1 });
  await registry.metrics();
  assert.equal(reads, 1);
});

test('label sets beyond the bound go to the "other" set and are counted', async () => {
  const registry = new Registry();
  const kernel = new FakeKernelCounts();
  new ConnectionMetrics(registry, lookups, kernel, 3);
  for (let port = 1; port <= 10; port++) kernel.add(connKey({ endpointPort: port }), { opened: 1 });
  const opened = await registry.getSingleMetric('kmesh_tcp_connections_opened_total')?.get();
  assert.equal(opened?.values.length, 4, '3 admitted + 1 overflow');
  const other = opened?.values.find((v) => v.labels.destination_address === 'other');
  assert.equal(other?.value, 7);
  assert.equal(other?.labels.reporter, 'source');
  assert.equal(await sumOf(registry, 'kmesh_probe_label_overflow_total'), 7);
  // an admitted set stays admitted
  const limiter = new LabelLimiter(1);
  const a = {
    reporter: 'source',
    source_workload: 'a',
    destination_service: 's',
    destination_address: 'x',
    destination_cluster: 'c',
  };
  assert.equal(limiter.admit(a), a);
  assert.equal(limiter.admit({ ...a, source_workload: 'b' }).source_workload, 'other');
  assert.equal(limiter.admit({ ...a }).source_workload, 'a');
});

test('connections the kernel counted in its overflow slot (key map full) are counted under "other"', async () => {
  const registry = new Registry();
  const kernel = new FakeKernelCounts();
  const metrics = new ConnectionMetrics(registry, lookups, kernel, 10);
  kernel.overflowCounts = { ...NO_COUNTS, opened: 4, closed: 3, failed: 1, sent: 30, received: 60 };
  metrics.refresh();
  kernel.overflowCounts = { ...NO_COUNTS, opened: 5, closed: 3, failed: 1, sent: 30, received: 60 };
  const closed = await registry.getSingleMetric('kmesh_tcp_sent_bytes_total')?.get();
  assert.equal(closed?.values.find((v) => v.labels.source_workload === 'other')?.value, 30);
  assert.equal(await sumOf(registry, 'kmesh_tcp_connections_opened_total'), 5);
  assert.equal(await sumOf(registry, 'kmesh_probe_label_overflow_total'), 9);
});

test('keys of cgroups that are gone are folded in, then deleted once the map is half full; their names stay', async () => {
  const registry = new Registry();
  const kernel = new FakeKernelCounts(4);
  let unitAlive = true;
  const metrics = new ConnectionMetrics(
    registry,
    { ...lookups, workloadOfCgroup: (id) => (id === 42n && unitAlive ? 'orders.service' : undefined) },
    kernel,
    10,
  );
  kernel.add(connKey({ endpointPort: 1 }), { opened: 1 });
  kernel.add(connKey({ endpointPort: 2 }), { opened: 1 });
  metrics.refresh();
  // the unit stopped: its cgroup is gone, its last connections closed meanwhile
  unitAlive = false;
  kernel.live.delete(42n);
  kernel.add(connKey({ endpointPort: 1 }), { closed: 1, sent: 10 });
  metrics.refresh();
  assert.equal(kernel.removed.length, 0, 'not pruned while the map is at most half full');
  kernel.add(connKey({ endpointPort: 3, cgroupId: 43n }), { opened: 1 });
  kernel.live.add(43n);
  metrics.refresh();
  assert.equal(kernel.removed.length, 2, 'both keys of cgroup 42');
  assert.equal(metrics.keys, 1);
  const closed = await registry.getSingleMetric('kmesh_tcp_connections_closed_total')?.get();
  assert.equal(closed?.values[0]?.labels.source_workload, 'orders.service');
  assert.equal(await sumOf(registry, 'kmesh_tcp_connections_opened_total'), 3);
});

test('keys alike but for the VIP stay apart', async () => {
  const registry = new Registry();
  const kernel = new FakeKernelCounts();
  new ConnectionMetrics(registry, lookups, kernel, 100);
  kernel.add(connKey({ vip: '2001:db8::5' }), { opened: 2 });
  kernel.add(connKey({ vip: '2001:db9::5' }), { opened: 1 });
  const opened = await registry.getSingleMetric('kmesh_tcp_connections_opened_total')?.get();
  const byService = Object.fromEntries((opened?.values ?? []).map((v) => [v.labels.destination_service, v.value]));
  assert.deepEqual(byService, { '[2001:db8::5]:9080': 2, '[2001:db9::5]:9080': 1 });
});

test('a connection key decodes to the same target as a record of that connection', () => {
  const fromKey = decodeConnKey(connKey({ steered: false }));
  assert.deepEqual(fromKey, { cgroupId: 42n, remote: '127.0.0.1', remotePort: 9081 });
  const ev = decodeEvent(rawEvent(PROBE_EV_CLOSE));
  assert.ok(ev);
  assert.deepEqual(decodeConnKey(connKey()).steered, ev.steered);
});

test('access log: one JSON line per closed/failed connection, switchable, independent of log level', () => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...chunk.toString().trim().split('\n'));
      cb();
    },
  });
  const log = new AccessLog(pino({ level: 'warn' }, sink), true);
  const record = (type: number): void => {
    const ev = decodeEvent(rawEvent(type, { sent: 10n, received: 20n }));
    assert.ok(ev);
    log.write(ev, labelsOf(ev, lookups));
  };
  record(PROBE_EV_CLOSE);
  record(PROBE_EV_FAILED);
  log.enabled = false;
  record(PROBE_EV_CLOSE);
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0] ?? '{}');
  assert.equal(first.kind, 'access');
  assert.equal(first.event, 'close');
  assert.equal(first.source_workload, 'orders.service');
  assert.equal(first.vip, '127.10.0.5:9080');
  assert.equal(first.endpoint, '127.0.0.1:9081');
  assert.equal(first.destination_cluster, 'reviews-v1');
  assert.equal(first.bytes_sent, 10);
  assert.equal(first.bytes_received, 20);
  assert.equal(first.duration_ms, 1.5);
  assert.equal(first.rtt_us, 35);
  assert.equal(JSON.parse(lines[1] ?? '{}').event, 'failed');
});
