/**
 * The probe wired into a real daemon as kmesh-daemon composes it (L4 data path + probe
 * on one pin directory, metrics server): connections to a VIP are steered by the L4
 * program, and the probe's metrics name the listener, the cluster and the chosen
 * endpoint from kmesh_sock_origin. A kernel without what the probe needs keeps the
 * daemon and /metrics.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import type { MetricsServer } from '../../src/probe/server.js';
import type { ProbeHandle } from '../../src/probe/wire.js';
import { detectFeatures } from '../../src/runtime/features.js';
import { inCgroupScript, runChild, waitFor } from './probe-harness.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { configWithPinDir, startTestDaemon, type TestDaemon, testPinDir } from './support/daemon.js';

const VIP = '127.77.0.5';
const N = 6;

let cg: TestCgroup;
let td: TestDaemon | undefined;
let handle: ProbeHandle | undefined;
let server: MetricsServer | undefined;
let backend: Server;
let port: number;

before(async () => {
  backend = createServer((s) => {
    s.on('data', () => {});
    s.on('end', () => s.end('pong!'));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  port = (backend.address() as AddressInfo).port;
  cg = makeCgroup('probe');
  td = await startTestDaemon(
    'probe',
    `
[metrics]
listen = "127.0.0.1:0"

[[services]]
cgroup = "${cg.path}"

[[clusters]]
name = "reviews-v1"
endpoints = [ { address = "127.0.0.1", port = ${port} } ]

[[listeners]]
name = "reviews"
address = "${VIP}"
port = 9080
cluster = "reviews-v1"
`,
  );
  handle = td.parts.probe;
  server = td.parts.metrics;
});

after(async () => {
  try {
    await td?.destroy(); // stops the probe plugin too, then unpins everything
  } finally {
    cg?.remove();
    await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
  }
});

/**
 * N connections from the registered cgroup to host:port (each sends "ping"); resolves with /metrics once the
 * closed series of `service` / `cluster` to the backend reaches N, and that series' labels.
 */
async function connectAndScrape(
  host: string,
  dialPort: number,
  service: string,
  cluster: string,
): Promise<{ text: string; labels: string }> {
  const body = `
for (let i = 0; i < ${N}; i++) await new Promise((resolve, reject) => {
  const c = net.connect(${dialPort}, '${host}', () => c.end('ping'));
  c.on('data', () => {}); c.on('close', resolve); c.on('error', reject);
});`;
  const res = await runChild(inCgroupScript(cg.path, body));
  assert.equal(res.code, 0, res.stderr);
  assert.ok(server);
  const url = `http://127.0.0.1:${server.address.port}/metrics`;
  const source = td?.daemon.listServices()[0]?.name ?? '';
  const labels = `reporter="source",source_workload="${source}",destination_service="${service}",destination_address="127.0.0.1:${port}",destination_cluster="${cluster}"`;
  let text = '';
  await waitFor(`close series of ${service}`, async () => {
    text = await (await fetch(url)).text();
    return text.includes(`kmesh_tcp_connections_closed_total{${labels}} ${N}`);
  });
  return { text, labels };
}

test('steered connections are labelled with listener, cluster and endpoint; /metrics serves them', async () => {
  const { text, labels } = await connectAndScrape(VIP, 9080, 'reviews', 'reviews-v1');
  assert.ok(text.includes(`kmesh_tcp_connections_opened_total{${labels}} ${N}`));
  assert.ok(text.includes(`kmesh_tcp_sent_bytes_total{${labels}} ${N * 4}`));
  assert.ok(text.includes(`kmesh_tcp_received_bytes_total{${labels}} ${N * 5}`));
  assert.match(text, /^kmesh_map_capacity\{map="kmesh_listeners"\} 16384$/m);
  assert.match(text, /^kmesh_map_entries\{map="kmesh_listeners"\} 1$/m);
  assert.match(text, /^kmesh_config_version 1$/m);
  assert.match(text, /^kmesh_probe_ringbuf_drops_total 0$/m);
  assert.match(text, /^kmesh_map_capacity\{map="kmesh_probe_conns"\} 16384$/m);
  assert.match(text, /^kmesh_map_entries\{map="kmesh_probe_conns"\} 1$/m);
});

test("a connection dialled straight to an endpoint's address is not labelled as steered", async () => {
  const { text, labels } = await connectAndScrape('127.0.0.1', port, 'unknown', 'unknown');
  assert.ok(text.includes(`kmesh_tcp_connections_opened_total{${labels}} ${N}`));
  // the steered series of the test before is unchanged
  assert.match(
    text,
    new RegExp(`kmesh_tcp_connections_closed_total\\{[^}]*destination_cluster="reviews-v1"\\} ${N}\n`),
  );
});

test('the access log follows the daemon switch', () => {
  assert.equal(handle?.probe.accessLogEnabled, false);
  td?.daemon.setAccessLog(true);
  assert.equal(handle?.probe.accessLogEnabled, true);
  td?.daemon.setAccessLog(false);
  assert.equal(handle?.probe.accessLogEnabled, false);
});

test('scrapes while the config is re-applied keep answering, and see each version', async () => {
  assert.ok(td && server);
  const url = `http://127.0.0.1:${server.address.port}/metrics`;
  const model = (port2: number) => ({
    clusters: [
      {
        name: 'xds-c',
        lbPolicy: 'round_robin' as const,
        endpoints: [{ address: '127.0.0.1', port: port2, weight: 1 }],
        source: 'xds' as const,
      },
    ],
    listeners: [
      {
        name: 'xds-l',
        address: '127.77.0.6',
        port: 9090,
        protocol: 'tcp' as const,
        routes: [{ cluster: 'xds-c', weight: 1 }],
        source: 'xds' as const,
      },
    ],
  });
  const before = td.daemon.status().configVersion;
  const scrapes = Array.from({ length: 20 }, async (_, i) => {
    await td?.daemon.applyXds(model(20000 + i));
    const res = await fetch(url);
    assert.equal(res.status, 200);
    const text = await res.text();
    const v = Number(text.match(/^kmesh_config_version (\d+)$/m)?.[1]);
    assert.ok(v > before && v <= before + 20, `version ${v}`);
  });
  await Promise.all(scrapes);
  const text = await (await fetch(url)).text();
  assert.match(text, new RegExp(`^kmesh_config_version ${before + 20}$`, 'm'));
  assert.match(text, new RegExp(`^kmesh_config_applies_total ${before + 20}$`, 'm'));
});

test('a kernel without the ring buffer: the probe family is off with the reason, the daemon and /metrics run on', async () => {
  const pinDir = testPinDir('noprobe');
  const features = {
    ...detectFeatures({}),
    map_ringbuf: { enabled: false, reason: 'kernel lacks BPF_MAP_TYPE_RINGBUF' },
  };
  const config = parseConfig(configWithPinDir('[metrics]\nlisten = "127.0.0.1:0"\n', pinDir), '/tmp/kmesh-test.toml');
  const warnings: string[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
  const parts = await startParts({ config, logger, pinDir, features });
  try {
    assert.equal(parts.probe, undefined);
    assert.equal(parts.datapath.enabled('probe'), false);
    const off = parts.daemon.status().features.probe;
    assert.equal(off?.enabled, false);
    assert.match(off?.reason ?? '', /map_ringbuf \(kernel lacks BPF_MAP_TYPE_RINGBUF\)/);
    assert.ok(
      warnings.some((l) => l.includes('feature off: kmesh-probe') && l.includes('map_ringbuf')),
      warnings.join(''),
    );
    assert.equal(parts.daemon.status().state, 'running');
    assert.ok(parts.metrics);
    const text = await (await fetch(`http://127.0.0.1:${parts.metrics.address.port}/metrics`)).text();
    assert.match(text, /^kmesh_config_version 1$/m);
    assert.match(text, /^kmesh_map_capacity\{map="kmesh_listeners"\} 16384$/m);
    assert.doesNotMatch(text, /kmesh_probe_conns/);
  } finally {
    await parts.stop();
    cleanupPins(pinDir);
  }
});
