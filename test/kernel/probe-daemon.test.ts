/**
 * The probe wired into a real Daemon (L4 data path + probe on one pin directory):
 * connections to a VIP are steered by the L4 program, and the probe's metrics name
 * the listener, the cluster and the chosen endpoint from kmesh_sock_origin.
 */
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Server } from 'node:net';
import { after, before, test } from 'node:test';
import { bpfObjectDir, pinPaths } from '../../src/controller/paths.js';
import { type ProbeHandle, startProbe } from '../../src/probe/wire.js';
import { inCgroupScript, runChild, waitFor } from './probe-harness.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

const VIP = '127.77.0.5';
const N = 6;

let cg: TestCgroup;
let td: TestDaemon | undefined;
let handle: ProbeHandle | undefined;
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
  handle = await startProbe(td.daemon, {
    pinMapsDir: pinPaths(td.pinDir).maps,
    bpfObjectDir: bpfObjectDir(),
    accessLog: false,
    metricsListen: '127.0.0.1:0',
  });
});

after(async () => {
  try {
    await td?.destroy(); // stops the probe plugin too, then unpins everything
  } finally {
    cg?.remove();
    await new Promise<void>((r) => (backend ? backend.close(() => r()) : r()));
  }
});

test('steered connections are labelled with listener, cluster and endpoint; /metrics serves them', async () => {
  const body = `
for (let i = 0; i < ${N}; i++) await new Promise((resolve, reject) => {
  const c = net.connect(9080, '${VIP}', () => c.end('ping'));
  c.on('data', () => {}); c.on('close', resolve); c.on('error', reject);
});`;
  const res = await runChild(inCgroupScript(cg.path, body));
  assert.equal(res.code, 0, res.stderr);
  assert.ok(handle?.server);
  const url = `http://127.0.0.1:${handle.server.address.port}/metrics`;
  const source = td?.daemon.listServices()[0]?.name ?? '';
  const labels = `reporter="source",source_workload="${source}",destination_service="reviews",destination_address="127.0.0.1:${port}",destination_cluster="reviews-v1"`;
  let text = '';
  await waitFor('labelled close series', async () => {
    text = await (await fetch(url)).text();
    return text.includes(`kmesh_tcp_connections_closed_total{${labels}} ${N}`);
  });
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

test('the access log follows the daemon switch', () => {
  assert.equal(handle?.probe.accessLogEnabled, false);
  td?.daemon.setAccessLog(true);
  assert.equal(handle?.probe.accessLogEnabled, true);
  td?.daemon.setAccessLog(false);
  assert.equal(handle?.probe.accessLogEnabled, false);
});

test('scrapes while the config is re-applied keep answering, and see each version', async () => {
  assert.ok(td && handle?.server);
  const url = `http://127.0.0.1:${handle.server.address.port}/metrics`;
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
