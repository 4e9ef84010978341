/** XdsClient against the in-repo ADS server: SotW versions/nonces, ACK/NACK, subscriptions, reconnect, bad input. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { XdsClient } from '../../src/api/xds/client.js';
import { parseXdsConfig } from '../../src/api/xds/config.js';
import { LIMITS } from '../../src/api/xds/decode.js';
import { KmeshError } from '../../src/contracts/errors.js';
import type { MeshModel } from '../../src/model/types.js';
import { FoldedModel } from '../fixtures/model-fold.js';
import { basic, eps, harness, live, stopHarnesses } from '../fixtures/xds-harness.js';
import {
  cluster,
  httpListener,
  loadAssignment,
  routeConfig,
  TYPE,
  tcpListener,
  XdsTestServer,
} from '../fixtures/xds-server.js';

const log = pino({ level: 'silent' });
const tmp = mkdtempSync(join(tmpdir(), 'kmesh-xds-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
afterEach(stopHarnesses);

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('xds client', () => {
  it('initial push: CDS → EDS subscription → LDS, all ACKed, model applied, node and token sent', async () => {
    const token = join(tmp, 'token');
    writeFileSync(token, 'secret-token\n');
    const h = await harness({ token_file: token });
    basic(h.server);
    const connected: boolean[] = [];
    h.client.on('connected', (c) => connected.push(c));
    h.client.start();
    const m = await h.waitModel((m) => m.listeners.length === 1);
    assert.equal(m.listeners[0]?.address, '127.10.1.1');
    assert.deepEqual(
      m.clusters[0]?.endpoints.map((e) => e.port),
      [9001],
    );
    await h.server.waitAck(TYPE.cluster);
    await h.server.waitAck(TYPE.endpoint);
    await h.server.waitAck(TYPE.listener);
    const first = h.server.requests[0];
    assert.equal(first?.nodeId, 'sidecar~127.0.0.1~vm1.default~default.svc.cluster.local');
    assert.equal(first?.authorization, 'Bearer secret-token');
    const eds = h.server.requests.find((r) => r.typeUrl === TYPE.endpoint);
    assert.deepEqual(eds?.resourceNames, ['outbound|80||svc']);
    assert.equal(h.client.connected, true);
    assert.deepEqual(connected, [true]);
    assert.equal(h.client.stats().nacks, 0);
  });

  it('endpoint add/remove and weight change reach the model; each version ACKed', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    h.server.set(TYPE.endpoint, [
      loadAssignment('outbound|80||svc', [...eps(9001, 9002), { address: '127.0.0.2', port: 9003, weight: 5 }]),
    ]);
    await h.waitModel((m) => m.clusters[0]?.endpoints.length === 3);
    await h.server.waitAck(TYPE.endpoint);
    h.server.set(TYPE.endpoint, [
      loadAssignment('outbound|80||svc', [{ address: '127.0.0.2', port: 9003, weight: 1 }]),
    ]);
    const m = await h.waitModel((m) => m.clusters[0]?.endpoints.length === 1);
    assert.deepEqual(m.clusters[0]?.endpoints, [{ address: '127.0.0.2', port: 9003, weight: 1 }]);
    await h.server.waitAck(TYPE.endpoint);
  });

  it('cluster removal drops the cluster and its listener and unsubscribes its EDS', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    h.server.set(TYPE.cluster, []);
    const m = await h.waitModel((m) => m.clusters.length === 0);
    assert.equal(m.listeners.length, 0);
    await h.server.waitFor((r) => r.typeUrl === TYPE.endpoint && r.resourceNames.length === 0 && r.kind !== 'initial');
  });

  it('invalid resource → NACK with a useful message, previous version kept, nothing applied', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    const goodVersion = h.server.version(TYPE.endpoint);
    const applied = h.models.length;
    const nacks: string[] = [];
    h.client.on('nack', (_t, msg) => nacks.push(msg));
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', [{ address: 'not-an-ip', port: 1 }])]);
    const nack = await h.server.waitFor((r) => r.kind === 'nack' && r.typeUrl === TYPE.endpoint);
    assert.equal(nack.versionInfo, goodVersion, 'NACK carries the previous version');
    assert.match(
      nack.errorDetail?.message ?? '',
      /load assignment outbound\|80\|\|svc: endpoint address "not-an-ip" is not an IP literal/,
    );
    assert.equal(h.models.length, applied);
    assert.equal(nacks.length, 1);
    assert.match(h.client.stats().lastError ?? '', /EDS NACK/);
    // A later good version is accepted again.
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', eps(9005))]);
    await h.waitModel((m) => m.clusters[0]?.endpoints[0]?.port === 9005);
  });

  it('apply throwing (daemon refuses) → NACK with its message; later pushes still applied', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    h.fail = new KmeshError('CapacityExceeded', 'endpoint map full (65536)');
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', eps(9001, 9002))]);
    const nack = await h.server.waitFor((r) => r.kind === 'nack');
    assert.match(
      nack.errorDetail?.message ?? '',
      /rejected by the daemon \(clusters outbound\|80\|\|svc\): endpoint map full/,
    );
    h.fail = undefined;
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', eps(9003))]);
    await h.waitModel((m) => m.clusters[0]?.endpoints[0]?.port === 9003);
  });

  it('bad input: malformed protobuf, unknown type URL, missing names, wrong resource type — stream survives', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    h.server.sendRaw(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]));
    h.server.sendResponse('type.googleapis.com/envoy.config.core.v3.Nonsense', '1', []);
    await h.server.waitFor((r) => r.kind === 'nack' && r.typeUrl.endsWith('Nonsense'));
    h.server.sendResponse(TYPE.cluster, 'x1', [{ typeUrl: TYPE.cluster, value: cluster({ name: '' }).value }]);
    const n1 = await h.server.waitFor((r) => r.kind === 'nack' && r.typeUrl === TYPE.cluster);
    assert.match(n1.errorDetail?.message ?? '', /cluster #0: missing name/);
    h.server.sendResponse(TYPE.listener, 'x2', [{ typeUrl: TYPE.cluster, value: cluster({ name: 'c' }).value }]);
    const n2 = await h.server.waitFor((r) => r.kind === 'nack' && r.typeUrl === TYPE.listener);
    assert.match(n2.errorDetail?.message ?? '', /type .*Cluster in a .*Listener response/);
    h.server.sendResponse(TYPE.listener, 'x3', [{ typeUrl: TYPE.listener, value: new Uint8Array([0x0a, 0x50, 0x41]) }]);
    const n3 = await h.server.waitFor(
      (r) => r.kind === 'nack' && r.versionInfo !== '' && r.errorDetail?.message.includes('malformed') === true,
    );
    assert.match(n3.errorDetail?.message ?? '', /listener #0: malformed Listener/);
    assert.equal(h.client.connected, true);
    assert.equal(h.models.at(-1)?.listeners.length, 1, 'model untouched');
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', eps(9009))]);
    await h.waitModel((m) => m.clusters[0]?.endpoints[0]?.port === 9009);
  });

  it('resource-count limit → NACK; big responses (> 4 MiB gRPC default) accepted', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    const many = Array.from({ length: 90_000 }, (_, i) => ({
      address: `127.0.${(i >> 8) & 255}.${i & 255}`,
      port: 1 + (i % 60000),
      weight: 1,
    }));
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', many)]);
    await h.waitModel((m) => m.clusters[0]?.endpoints.length === 90_000, 15000);
    const saved = LIMITS.resourcesPerResponse;
    LIMITS.resourcesPerResponse = 3;
    try {
      h.server.set(
        TYPE.cluster,
        ['a', 'b', 'c', 'd'].map((n) => cluster({ name: n })),
      );
      const nack = await h.server.waitFor((r) => r.kind === 'nack' && r.typeUrl === TYPE.cluster);
      assert.match(nack.errorDetail?.message ?? '', /4 resources in one response \(limit 3\)/);
    } finally {
      LIMITS.resourcesPerResponse = saved;
    }
  });

  it('flood: 300 pushes back to back are coalesced; the last version wins and is ACKed', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    const before = h.models.length;
    for (let i = 0; i < 300; i++) h.server.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', eps(10000 + i))]);
    await h.waitModel((m) => m.clusters[0]?.endpoints[0]?.port === 10299);
    await h.server.waitAck(TYPE.endpoint);
    assert.ok(h.models.length - before < 300, `applies coalesced (${h.models.length - before})`);
  });

  it('server restart → reconnect, re-subscribe with last versions; config kept while down', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    const port = h.server.port;
    const versions = { cds: h.server.version(TYPE.cluster), eds: h.server.version(TYPE.endpoint) };
    const events: boolean[] = [];
    h.client.on('connected', (c) => events.push(c));
    await h.server.stop();
    const t0 = Date.now();
    while (h.client.connected && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(h.client.connected, false);
    const applied = h.models.length;
    const server2 = new XdsTestServer('w');
    await server2.start(port);
    h.server = server2;
    live.push({ ...h, client: { stop: async () => {} } as unknown as XdsClient });
    basic(server2, eps(9100));
    const sub = await server2.waitFor((r) => r.typeUrl === TYPE.endpoint && r.kind === 'initial', 10000);
    assert.deepEqual(sub.resourceNames, ['outbound|80||svc'], 'EDS re-subscribed by name on the new stream');
    assert.equal(sub.versionInfo, versions.eds, 'with the last ACKed version');
    const cds = await server2.waitFor((r) => r.typeUrl === TYPE.cluster && r.kind === 'initial');
    assert.equal(cds.versionInfo, versions.cds);
    assert.equal(h.models.length >= applied, true);
    await h.waitModel((m) => m.clusters[0]?.endpoints[0]?.port === 9100, 10000);
    assert.deepEqual(events.slice(0, 2), [false, true]);
  });

  it('HTTP: LDS → RDS subscription by route name → VIP listener from domains', async () => {
    const h = await harness();
    h.server.set(TYPE.cluster, [cluster({ name: 'outbound|9080||reviews' })]);
    h.server.set(TYPE.endpoint, [loadAssignment('outbound|9080||reviews', eps(9081))]);
    h.server.set(TYPE.listener, [httpListener(9080)]);
    h.server.set(TYPE.route, [
      routeConfig('9080', [
        { name: 'reviews', domains: ['reviews', '127.10.2.1', '127.10.2.1:9080'], dest: 'outbound|9080||reviews' },
      ]),
    ]);
    h.client.start();
    const m = await h.waitModel((m) => m.listeners.length === 1);
    assert.deepEqual([m.listeners[0]?.name, m.listeners[0]?.protocol], ['127.10.2.1_9080', 'http']);
    const rds = await h.server.waitAck(TYPE.route);
    assert.deepEqual(rds.resourceNames, ['9080']);
  });

  it('STRICT_DNS cluster resolved with the injected lookup', async () => {
    const server = new XdsTestServer();
    const p = await server.start();
    const cfg = parseXdsConfig({ address: `127.0.0.1:${p}`, initial_backoff_ms: 20, max_backoff_ms: 100 }, (k) => k);
    const models: MeshModel[] = [];
    const folded = new FoldedModel();
    const client = new XdsClient(cfg, async (c) => void models.push(folded.applied(c)), log, {
      lookup: async (host) => (host === 'db.test' ? ['127.0.0.30'] : []),
    });
    live.push({ server, client });
    server.set(TYPE.cluster, [
      cluster({ name: 'db', type: 'STRICT_DNS', endpoints: [{ address: 'db.test', port: 5432 }] }),
    ]);
    server.set(TYPE.listener, [tcpListener('127.10.3.1', 5432, 'db')]);
    client.start();
    const t0 = Date.now();
    while (!models.some((m) => m.listeners.length === 1) && Date.now() - t0 < 5000)
      await new Promise((r) => setTimeout(r, 10));
    const m = models.at(-1);
    assert.deepEqual(m?.clusters[0]?.endpoints, [{ address: '127.0.0.30', port: 5432, weight: 1 }]);
    assert.equal(m?.listeners.length, 1);
  });

  it('TLS with a CA file, a client certificate (verified by the server) and a bearer token', {
    skip: !hasOpenssl() && 'openssl not installed',
  }, async () => {
    // A throwaway CA, a server cert for 127.0.0.1 and a client cert, made with openssl for this test only.
    const f = (n: string) => join(tmp, n);
    const ossl = (...a: string[]) => execFileSync('openssl', a, { stdio: 'ignore' });
    ossl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=kmesh-test-ca',
      '-keyout',
      f('ca.key'),
      '-out',
      f('ca.pem'),
    );
    writeFileSync(f('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
    for (const who of ['server', 'client']) {
      ossl(
        'req',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-subj',
        `/CN=${who}`,
        '-keyout',
        f(`${who}.key`),
        '-out',
        f(`${who}.csr`),
      );
      ossl(
        'x509',
        '-req',
        '-in',
        f(`${who}.csr`),
        '-CA',
        f('ca.pem'),
        '-CAkey',
        f('ca.key'),
        '-CAcreateserial',
        '-days',
        '1',
        '-extfile',
        f('san.ext'),
        '-out',
        f(`${who}.pem`),
      );
    }
    writeFileSync(f('tls-token'), 'tok-123');
    const server = new XdsTestServer();
    const creds = grpc.ServerCredentials.createSsl(
      readFileSync(f('ca.pem')),
      [{ private_key: readFileSync(f('server.key')), cert_chain: readFileSync(f('server.pem')) }],
      true,
    );
    const p = await server.start(0, '127.0.0.1', creds);
    basic(server);
    const cfg = parseXdsConfig(
      {
        address: `127.0.0.1:${p}`,
        ca_file: f('ca.pem'),
        cert_file: f('client.pem'),
        key_file: f('client.key'),
        token_file: f('tls-token'),
        initial_backoff_ms: 20,
        max_backoff_ms: 100,
      },
      (k) => k,
    );
    assert.equal(cfg.tls, true);
    const models: MeshModel[] = [];
    const folded = new FoldedModel();
    const client = new XdsClient(cfg, async (c) => void models.push(folded.applied(c)), log);
    live.push({ server, client });
    client.start();
    const ack = await server.waitAck(TYPE.listener);
    assert.equal(ack.authorization, 'Bearer tok-123');
    await server.waitAck(TYPE.endpoint);
    assert.equal(models.at(-1)?.listeners.length, 1);
    assert.equal(client.connected, true);
  });
});
