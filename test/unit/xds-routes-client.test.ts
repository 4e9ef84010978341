/** An over-limit HTTP route table over a real ADS stream: NACKed naming the route configuration, nothing applied. */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import pino from 'pino';
import { XdsClient } from '../../src/api/xds/client.js';
import { parseXdsConfig } from '../../src/api/xds/config.js';
import { L7_LIMITS } from '../../src/l7/limits.js';
import type { MeshModel } from '../../src/model/types.js';
import {
  cluster,
  httpListener,
  loadAssignment,
  routeAction,
  routeConfig,
  TYPE,
  XdsTestServer,
} from '../fixtures/xds-server.js';

const PORT = 36501;
const VIP = '127.46.0.40';

const server = new XdsTestServer();
const models: MeshModel[] = [];
let client: XdsClient | undefined;
after(async () => {
  await client?.stop();
  await server.stop();
});

const routes = (count: number) => [
  ...Array.from({ length: count - 1 }, (_, i) => ({
    name: `r${i}`,
    match: { path: `/${i}` },
    route: routeAction('v2'),
  })),
  { name: 'default', match: { prefix: '/' }, route: routeAction('v1') },
];
const rds = (count: number) => routeConfig('9080', [{ name: 'vh', domains: [VIP], routes: routes(count) }]);

async function waitFor<T>(what: string, get: () => T | undefined, timeoutMs = 5000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = get();
    if (v !== undefined) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
const routeCount = () => models.at(-1)?.listeners[0]?.virtualHosts?.[0]?.routes.length;

it('RDS over the route limit → NACK naming it; the applied routes stay; a good version is taken again', async () => {
  await server.start(PORT);
  server.set(TYPE.cluster, [cluster({ name: 'v1' }), cluster({ name: 'v2' })]);
  server.set(TYPE.endpoint, [
    loadAssignment('v1', [{ address: '127.46.0.41', port: 36502 }]),
    loadAssignment('v2', [{ address: '127.46.0.42', port: 36503 }]),
  ]);
  server.set(TYPE.listener, [httpListener(9080)]);
  server.set(TYPE.route, [rds(3)]);
  const cfg = parseXdsConfig(
    { address: `127.0.0.1:${PORT}`, node_id: 'sidecar~127.0.0.1~vm1.default~default.svc.cluster.local' },
    (k) => k,
  );
  client = new XdsClient(cfg, async (m) => void models.push(structuredClone(m)), pino({ level: 'silent' }));
  client.start();
  await waitFor('3 routes applied', () => (routeCount() === 3 ? true : undefined));
  const applied = models.length;

  const over = L7_LIMITS.routesPerVirtualHost + 1;
  server.set(TYPE.route, [rds(over)]);
  const nack = await server.waitFor((r) => r.kind === 'nack' && r.typeUrl === TYPE.route);
  assert.equal(
    nack.errorDetail?.message,
    `route configuration 9080 vhost vh: routes: at most ${L7_LIMITS.routesPerVirtualHost} routes per virtual host, got ${over}`,
  );
  assert.equal(models.length, applied, 'nothing applied');

  server.set(TYPE.route, [rds(L7_LIMITS.routesPerVirtualHost)]);
  await waitFor('16 routes applied', () => (routeCount() === L7_LIMITS.routesPerVirtualHost ? true : undefined));
});
