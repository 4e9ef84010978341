/**
 * HTTP routes in the resource-by-resource paths: the xDS model builder warms a listener on its HTTP routes'
 * clusters too, and the daemon's mesh state refuses removing a cluster only an HTTP route still names.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeCluster, decodeListener, decodeLoadAssignment, decodeRouteConfig } from '../../src/api/xds/decode.js';
import { XdsModelBuilder } from '../../src/api/xds/model-builder.js';
import { KmeshError } from '../../src/contracts/errors.js';
import { MeshState } from '../../src/controller/mesh-state.js';
import { emptyChange, type ModelChange } from '../../src/model/change.js';
import type { Listener } from '../../src/model/types.js';
import { cluster, httpListener, loadAssignment, routeAction, routeConfig } from '../fixtures/xds-server.js';
import { listener, cluster as modelCluster } from '../support/model-builders.js';

const VIP = '127.46.0.50';

describe('xDS model builder', () => {
  test('a listener waits for the cluster of an HTTP route, and warms when it gets endpoints', () => {
    const b = new XdsModelBuilder();
    const routes = [
      { name: 'canary', match: { prefix: '/', headers: [{ name: 'x', exactMatch: '1' }] }, route: routeAction('v2') },
      { name: 'default', match: { prefix: '/' }, route: routeAction('v1') },
    ];
    for (const [i, name] of ['v1', 'v2'].entries()) b.setCluster(name, decodeCluster(cluster({ name }).value, i));
    b.setAssignment(
      'v1',
      decodeLoadAssignment(loadAssignment('v1', [{ address: '127.46.0.51', port: 36601 }]).value, 0),
    );
    b.setRoute('9080', decodeRouteConfig(routeConfig('9080', [{ name: 'vh', domains: [VIP], routes }]).value, 0));
    b.setListener('0.0.0.0_9080', decodeListener(httpListener(9080).value, 0));
    const first = b.build();
    b.commit();
    assert.deepEqual(first.warming, [`${VIP}_9080`]);
    assert.deepEqual(b.snapshot().listeners, []);

    b.setAssignment(
      'v2',
      decodeLoadAssignment(loadAssignment('v2', [{ address: '127.46.0.52', port: 36602 }]).value, 0),
    );
    const second = b.build();
    b.commit();
    assert.deepEqual(
      second.change.upsertListeners.map((l) => l.name),
      [`${VIP}_9080`],
    );
    assert.deepEqual(
      b.snapshot().listeners[0]?.virtualHosts?.[0]?.routes.map((r) => r.name),
      ['canary', 'default'],
    );
  });
});

describe('mesh state', () => {
  const change = (part: Partial<ModelChange>): ModelChange => ({ ...emptyChange(), ...part });
  const routed: Listener = {
    ...listener('web', VIP, 80, [['v1', 1]], 'http'),
    virtualHosts: [
      {
        name: '*',
        domains: ['*'],
        routes: [{ name: 'canary', match: { headers: [] }, clusters: [{ cluster: 'v2', weight: 1 }] }],
      },
    ],
  };

  test('an HTTP route naming an unknown cluster is refused', async () => {
    const state = new MeshState();
    await assert.rejects(
      () => state.stage('xds', change({ upsertClusters: [modelCluster('v1')], upsertListeners: [routed] })),
      (e: unknown) =>
        e instanceof KmeshError &&
        e.message === 'listener "web" virtual_hosts[0].routes[0].cluster: unknown cluster "v2"',
    );
  });

  test('removing a cluster only an HTTP route names is refused; removing both together is fine', async () => {
    const state = new MeshState();
    (
      await state.stage(
        'xds',
        change({ upsertClusters: [modelCluster('v1'), modelCluster('v2')], upsertListeners: [routed] }),
      )
    ).commit();
    await assert.rejects(
      () => state.stage('xds', change({ removeClusters: ['v2'] })),
      (e: unknown) => e instanceof KmeshError && e.message === 'listener "web" virtual_hosts: unknown cluster "v2"',
    );
    (await state.stage('xds', change({ removeClusters: ['v2'], removeListeners: ['web'] }))).commit();
    assert.deepEqual(state.model().listeners, []);
  });
});
