/**
 * The client side of proportional applies and the xDS bits of the fault list: a SotW resend hands the daemon only
 * what changed; shadowed listeners are warned about and dumped; unknown enum values are NACKed; reconnects keep to
 * initial_backoff_ms/max_backoff_ms (measured); memory stays flat across 1,000 pushes (measured).
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import pino from 'pino';
import { XdsClient } from '../../src/api/xds/client.js';
import { parseXdsConfig } from '../../src/api/xds/config.js';
import { xdsTypes } from '../../src/api/xds/protos.js';
import { basic, eps, harness, live, stopHarnesses } from '../fixtures/xds-harness.js';
import { cluster, loadAssignment, TYPE, tcpListener, XdsTestServer } from '../fixtures/xds-server.js';

afterEach(stopHarnesses);

const names = (n: number) => Array.from({ length: n }, (_, i) => `outbound|80||s${i}`);

describe('xds client: proportional changes and faults', () => {
  for (const mode of ['sotw', 'delta'] as const) {
    it(`${mode}: 200 clusters resent with one changed → one cluster handed to the daemon`, async () => {
      const h = await harness({ mode });
      const ns = names(200);
      const clas = ns.map((n, i) => loadAssignment(n, eps(10000 + i)));
      h.server.set(
        TYPE.cluster,
        ns.map((name) => cluster({ name })),
      );
      h.server.set(TYPE.endpoint, clas);
      h.server.set(
        TYPE.listener,
        ns.map((n, i) => tcpListener(`127.43.0.${i + 1}`, 80, n)),
      );
      h.client.start();
      await h.waitModel((m) => m.listeners.length === 200);
      const before = h.changes.length;
      clas[7] = loadAssignment(ns[7] as string, eps(10007, 10500));
      h.server.set(TYPE.endpoint, clas);
      await h.waitModel((m) => m.clusters.find((c) => c.name === ns[7])?.endpoints.length === 2);
      const changes = h.changes.slice(before);
      assert.deepEqual(
        changes.map((c) => [c.upsertClusters.map((x) => x.name), c.upsertListeners.length, c.removeClusters.length]),
        [[[ns[7]], 0, 0]],
      );
      // A cluster resend identical to what is held: nothing for the daemon (SotW: still ACKed; delta: not sent).
      h.server.set(
        TYPE.cluster,
        ns.map((name) => cluster({ name })),
      );
      if (mode === 'sotw') await h.server.waitAck(TYPE.cluster);
      else await new Promise((r) => setTimeout(r, 200));
      assert.equal(h.changes.length, before + 1);
    });
  }

  it('a second listener on the same VIP:port is shadowed: warned about, in dump(), programmed again when alone', async () => {
    const h = await harness();
    basic(h.server);
    h.server.set(TYPE.listener, [
      tcpListener('127.43.1.1', 80, 'outbound|80||svc', 'a-first'),
      tcpListener('127.43.1.1', 80, 'outbound|80||svc', 'b-second'),
    ]);
    h.client.start();
    await h.server.waitAck(TYPE.listener);
    await h.waitModel((m) => m.listeners.length === 1);
    assert.equal(h.models.at(-1)?.listeners[0]?.name, 'a-first');
    assert.deepEqual(h.client.dump().shadowedListeners, [
      'listener b-second: 127.43.1.1:80 already programmed by a-first; skipped',
    ]);
    h.server.set(TYPE.listener, [tcpListener('127.43.1.1', 80, 'outbound|80||svc', 'b-second')]);
    await h.waitModel((m) => m.listeners[0]?.name === 'b-second');
    assert.deepEqual(h.client.dump().shadowedListeners, []);
  });

  it('unknown enum values (lb_policy 42, discovery type 9, health 17) are NACKed naming the resource', async () => {
    const h = await harness();
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    const t = xdsTypes();
    const raw = (obj: Record<string, unknown>) => t.Cluster.encode(t.Cluster.fromObject(obj)).finish();
    const cases: Array<[Uint8Array, RegExp]> = [
      [raw({ name: 'c1', type: 3, lbPolicy: 42 }), /cluster c1: unknown lb_policy value 42/],
      [raw({ name: 'c2', type: 9 }), /cluster c2: unknown type value 9/],
    ];
    for (const [value, re] of cases) {
      const nonce = h.server.sendResponse(TYPE.cluster, 'bad', [{ typeUrl: TYPE.cluster, value }]);
      const nack = await h.server.waitFor((r) => r.responseNonce === nonce);
      assert.equal(nack.kind, 'nack');
      assert.match(nack.errorDetail?.message ?? '', re);
    }
    const cla = t.ClusterLoadAssignment;
    const bad = cla
      .encode(
        cla.fromObject({
          clusterName: 'outbound|80||svc',
          endpoints: [
            {
              lbEndpoints: [
                { endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: 1 } } }, healthStatus: 17 },
              ],
            },
          ],
        }),
      )
      .finish();
    const nonce = h.server.sendResponse(TYPE.endpoint, 'bad', [{ typeUrl: TYPE.endpoint, value: bad }]);
    const nack = await h.server.waitFor((r) => r.responseNonce === nonce);
    assert.match(
      nack.errorDetail?.message ?? '',
      /load assignment outbound\|80\|\|svc: unknown health_status value 17/,
    );
    assert.equal(h.models.at(-1)?.clusters[0]?.lbPolicy, 'round_robin', 'live config kept');
  });

  it('reconnect keeps to max_backoff_ms after a long outage (no grpc-js channel backoff on top)', async () => {
    const maxBackoff = 200;
    const h = await harness({ initial_backoff_ms: 50, max_backoff_ms: maxBackoff });
    basic(h.server);
    h.client.start();
    await h.waitModel((m) => m.listeners.length === 1);
    const port = h.server.port;
    await h.server.stop();
    // Long enough for grpc-js's own channel backoff (1 s, ×1.6 per attempt) to reach several seconds.
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(h.client.connected, false);
    const server2 = new XdsTestServer('w');
    live.push({ server: server2, client: h.client });
    basic(server2);
    const up = Date.now();
    await server2.start(port);
    await server2.waitFor((r) => r.typeUrl === TYPE.cluster, 5000);
    const ms = Date.now() - up;
    process.stdout.write(
      `# reconnect after a 4 s outage: ${ms} ms after the server was back (max_backoff_ms ${maxBackoff})\n`,
    );
    assert.ok(ms <= maxBackoff + 250, `reconnected ${ms} ms after the server came back`);
  });

  for (const mode of ['sotw', 'delta'] as const) {
    it(`${mode}: memory is flat across 1,000 pushes (live heap after GC)`, async () => {
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as () => void;
      const server = new XdsTestServer();
      const port = await server.start();
      let applies = 0;
      const client = new XdsClient(
        parseXdsConfig({ address: `127.0.0.1:${port}`, mode }, (k) => k),
        async () => {
          applies++;
        },
        pino({ level: 'silent' }),
      );
      live.push({ server, client });
      basic(server);
      client.start();
      await server.waitAck(TYPE.endpoint);
      const heapAfter = async (pushes: number, from: number) => {
        for (let i = from; i < from + pushes; i++) {
          const was = applies;
          h(server, i);
          while (applies === was) await new Promise((r) => setImmediate(r));
        }
        await server.waitAck(TYPE.endpoint);
        server.requests.length = 0; // the fixture's own records, not the client's
        server.sentDeltas.length = 0;
        gc();
        gc();
        return process.memoryUsage().heapUsed;
      };
      const h = (s: XdsTestServer, i: number) =>
        s.set(TYPE.endpoint, [loadAssignment('outbound|80||svc', eps(20000 + i, 30000 + (i % 7)))]);
      // After a warm-up (V8's code and feedback for these paths settle within the first thousand pushes), the live heap
      // must not follow the number of pushes: a leak of a response or a change per push would be several MB here.
      const warm = await heapAfter(1000, 0);
      const after = await heapAfter(1000, 1000);
      const growthKB = (after - warm) / 1024;
      process.stdout.write(
        `# ${mode}: heap after 1,000 pushes ${(warm / 1048576).toFixed(2)} MB, after 1,000 more ${(after / 1048576).toFixed(2)} MB (${growthKB.toFixed(0)} KB)\n`,
      );
      assert.ok(growthKB < 1024, `heap grew ${growthKB.toFixed(0)} KB over 1,000 pushes`);
    });
  }
});
