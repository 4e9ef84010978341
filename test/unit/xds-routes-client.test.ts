/** An over-limit HTTP route table over a real ADS stream: NACKed naming the route configuration, nothing applied. */
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { L7_LIMITS } from '../../src/l7/limits.js';
import type { MeshModel } from '../../src/model/types.js';
import { harness, stopHarnesses } from '../fixtures/xds-harness.js';
import { cluster, httpListener, loadAssignment, routeAction, routeConfig, TYPE } from '../fixtures/xds-server.js';

afterEach(stopHarnesses);

const PORT = 36501;
const VIP = '127.46.0.40';

const routes = (count: number) => [
  ...Array.from({ length: count - 1 }, (_, i) => ({
    name: `r${i}`,
    match: { path: `/${i}` },
    route: routeAction('v2'),
  })),
  { name: 'default', match: { prefix: '/' }, route: routeAction('v1') },
];
const rds = (count: number) => routeConfig('9080', [{ name: 'vh', domains: [VIP], routes: routes(count) }]);
const routeCount = (m: MeshModel) => m.listeners[0]?.virtualHosts?.[0]?.routes.length;

it('RDS over the route limit → NACK naming it; the applied routes stay; a good version is taken again', async () => {
  const h = await harness({}, PORT);
  h.server.set(TYPE.cluster, [cluster({ name: 'v1' }), cluster({ name: 'v2' })]);
  h.server.set(TYPE.endpoint, [
    loadAssignment('v1', [{ address: '127.46.0.41', port: 36502 }]),
    loadAssignment('v2', [{ address: '127.46.0.42', port: 36503 }]),
  ]);
  h.server.set(TYPE.listener, [httpListener(9080)]);
  h.server.set(TYPE.route, [rds(3)]);
  h.client.start();
  await h.waitModel((m) => routeCount(m) === 3);
  const applied = h.models.length;

  const over = L7_LIMITS.routesPerVirtualHost + 1;
  h.server.set(TYPE.route, [rds(over)]);
  const nack = await h.server.waitFor((r) => r.kind === 'nack' && r.typeUrl === TYPE.route);
  assert.equal(
    nack.errorDetail?.message,
    `route configuration 9080 vhost vh: routes: at most ${L7_LIMITS.routesPerVirtualHost} routes per virtual host, got ${over}`,
  );
  assert.equal(h.models.length, applied, 'nothing applied');

  h.server.set(TYPE.route, [rds(L7_LIMITS.routesPerVirtualHost)]);
  await h.waitModel((m) => routeCount(m) === L7_LIMITS.routesPerVirtualHost);
});
