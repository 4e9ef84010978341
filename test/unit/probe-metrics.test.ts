/** Events → labels → counters and access-log lines, without a kernel. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { Registry } from 'prom-client';
import { AccessLog } from '../../src/probe/access-log.js';
import { Aggregator } from '../../src/probe/aggregate.js';
import { ConnectionMetrics } from '../../src/probe/connection-metrics.js';
import { decodeEvent, EV_CLOSE, EV_FAILED, EV_OPEN, F_STEERED, probeEvent } from '../../src/probe/event-codec.js';
import { LabelLimiter, labelsOf, type ProbeLookups } from '../../src/probe/labels.js';
import { encodeAddr } from '../../src/runtime/maps/addr.js';
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
    flags: opts.steered === false ? 0 : F_STEERED,
  });
}

test('a steered event decodes to listener/cluster/endpoint labels', () => {
  const ev = decodeEvent(rawEvent(EV_CLOSE, { sent: 10n, received: 20n }));
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
  const ev = decodeEvent(rawEvent(EV_OPEN, { steered: false }));
  assert.ok(ev);
  assert.equal(ev.steered, undefined);
  assert.equal(labelsOf(ev, lookups).destination_service, 'unknown');
  assert.equal(labelsOf(ev, { ...lookups, workloadOfCgroup: () => undefined }).source_workload, 'cgroup:42');
  assert.equal(decodeEvent(Buffer.alloc(probeEvent.size)), null, 'type 0 is not an event');
});

test('counters: opened, closed, failed and bytes per label set', async () => {
  const registry = new Registry();
  const agg = new Aggregator(100);
  new ConnectionMetrics(registry, lookups, () => agg.drain(), 10);
  for (const [type, sent, received] of [
    [EV_OPEN, 0n, 0n],
    [EV_CLOSE, 1000n, 2000n],
    [EV_OPEN, 0n, 0n],
    [EV_CLOSE, 5n, 7n],
    [EV_FAILED, 0n, 0n],
  ] as const) {
    assert.equal(agg.add(rawEvent(type, { sent, received })), type);
  }
  assert.deepEqual(agg.byType, { open: 2, close: 2, failed: 1 });
  const text = await registry.metrics();
  const labels =
    'reporter="source",source_workload="orders.service",destination_service="reviews",destination_address="127.0.0.1:9081",destination_cluster="reviews-v1"';
  assert.match(text, new RegExp(`kmesh_tcp_connections_opened_total\\{${labels}\\} 2`));
  assert.match(text, new RegExp(`kmesh_tcp_connections_closed_total\\{${labels}\\} 2`));
  assert.match(text, new RegExp(`kmesh_tcp_connections_failed_total\\{${labels}\\} 1`));
  assert.match(text, new RegExp(`kmesh_tcp_sent_bytes_total\\{${labels}\\} 1005`));
  assert.match(text, new RegExp(`kmesh_tcp_received_bytes_total\\{${labels}\\} 2007`));
});

test('label sets beyond the bound go to the "other" set and are counted', async () => {
  const registry = new Registry();
  const agg = new Aggregator(100);
  new ConnectionMetrics(registry, lookups, () => agg.drain(), 3);
  for (let port = 1; port <= 10; port++) agg.add(rawEvent(EV_OPEN, { endpointPort: port }));
  const opened = await registry.getSingleMetric('kmesh_tcp_connections_opened_total')?.get();
  assert.equal(opened?.values.length, 4, '3 admitted + 1 overflow');
  const other = opened?.values.find((v) => v.labels.destination_address === 'other');
  assert.equal(other?.value, 7);
  assert.equal(other?.labels.reporter, 'source');
  const overflow = await registry.getSingleMetric('kmesh_probe_label_overflow_total')?.get();
  assert.equal(overflow?.values[0]?.value, 7);
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

test('the aggregator bounds its keys between scrapes and counts the rest as "other"', async () => {
  const registry = new Registry();
  const agg = new Aggregator(2);
  new ConnectionMetrics(registry, lookups, () => agg.drain(), 100);
  for (let port = 1; port <= 5; port++) agg.add(rawEvent(EV_CLOSE, { endpointPort: port, sent: 1n, received: 2n }));
  const closed = await registry.getSingleMetric('kmesh_tcp_connections_closed_total')?.get();
  assert.equal(closed?.values.find((v) => v.labels.destination_address === 'other')?.value, 3);
  const sent = await registry.getSingleMetric('kmesh_tcp_sent_bytes_total')?.get();
  assert.equal(
    sent?.values.reduce((a, v) => a + v.value, 0),
    5,
  );
  // drained: the next scrape starts from an empty map, the counters keep their totals
  agg.add(rawEvent(EV_CLOSE, { endpointPort: 9, sent: 1n }));
  const again = await registry.getSingleMetric('kmesh_tcp_connections_closed_total')?.get();
  assert.equal(
    again?.values.reduce((a, v) => a + v.value, 0),
    6,
  );
});

test('keys that hash alike (VIPs differing only in the words the hash skips) stay apart', async () => {
  const registry = new Registry();
  const agg = new Aggregator(100);
  new ConnectionMetrics(registry, lookups, () => agg.drain(), 100);
  for (const vip of ['2001:db8::5', '2001:db9::5', '2001:db8::5']) {
    const ev = Buffer.from(rawEvent(EV_OPEN));
    sockOrigin
      .encode({ vip: encodeAddr(vip), endpoint: encodeAddr('::1'), vip_port: 80, endpoint_port: 81, cluster_id: 7 })
      .copy(ev, probeEvent.fields.find((f) => f.name === 'origin')?.offset);
    agg.add(ev);
  }
  const opened = await registry.getSingleMetric('kmesh_tcp_connections_opened_total')?.get();
  const byService = Object.fromEntries((opened?.values ?? []).map((v) => [v.labels.destination_service, v.value]));
  assert.deepEqual(byService, { '[2001:db8::5]:80': 2, '[2001:db9::5]:80': 1 });
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
  record(EV_OPEN);
  record(EV_CLOSE);
  record(EV_FAILED);
  log.enabled = false;
  record(EV_CLOSE);
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
