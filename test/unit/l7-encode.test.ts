/** The route model as L7 map entries (pure). */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assignClusterIds } from '../../src/controller/cluster-ids.js';
import { desiredL7 } from '../../src/l7/encode.js';
import { l7Hash } from '../../src/l7/hash.js';
import { DOMAIN_KIND, l7Cluster, l7DomainKey, l7Listener } from '../../src/l7/layouts.js';
import type { MeshModel } from '../../src/model/types.js';
import { cluster, ep, header, listener, route, vhost } from '../support/model-builders.js';

const anchor = { address: '127.0.0.1', port: 40000 };
const ids = new Map([
  ['v1', 11],
  ['v2', 12],
]);

function model(
  routes = [route('canary', { headers: [header('x-canary', { kind: 'exact', value: '1' })] }, 'v2')],
): MeshModel {
  const web = listener('web', '127.45.9.1', 80, [['v1', 1]], 'http');
  web.virtualHosts = [vhost('web', ['api.example.com', '*.example.com', 'api.*', '*'], routes)];
  const plain = listener('plain', '127.45.9.2', 80, [['v1', 1]], 'http');
  return {
    clusters: [cluster('v1', [ep('127.0.0.1', 1)]), cluster('v2', [ep('127.0.0.1', 2), ep('::1', 3)])],
    listeners: [web, plain],
  };
}

describe('desiredL7', () => {
  test('the polynomial hash: H(s) = sum s[i] * B^(n-1-i) mod 2^64', () => {
    const B = 0x100000001b3n;
    assert.equal(l7Hash('ab'), (97n * B + 98n) & ((1n << 64n) - 1n));
    assert.equal(l7Hash(''), 0n);
  });

  test('listeners with routes only; domains by kind; the anchor in the listener entry; IPv4 endpoints pooled', () => {
    const pools = new Map<string, number>();
    const d = desiredL7(
      model(),
      ids,
      anchor,
      (e) => {
        if (!pools.has(e)) pools.set(e, pools.size);
        return pools.get(e) as number;
      },
      assignClusterIds,
    );
    assert.equal(d.tables.listeners.size, 1);
    const [entry] = [...d.tables.listeners.values()];
    const l = l7Listener.decode(entry?.value as Buffer);
    assert.equal(l.anchor_port.readUInt16BE(0), 40000);
    assert.deepEqual(l.cluster_ids.slice(0, l.cluster_count), [11]);
    const kinds = [...d.tables.domains.values()].map((e) => l7DomainKey.decode(e.key)).map((k) => [k.kind, k.hash]);
    assert.deepEqual(kinds, [
      [DOMAIN_KIND.exact, l7Hash('api.example.com')],
      [DOMAIN_KIND.suffix, l7Hash('.example.com')],
      [DOMAIN_KIND.prefix, l7Hash('api.')],
      [DOMAIN_KIND.any, 0n],
    ]);
    assert.deepEqual([...d.endpoints.keys()].sort(), ['127.0.0.1:1', '127.0.0.1:2']);
    // host plus the one header name the routes use
    assert.equal(d.tables.headerNames.size, 2);
  });

  test("circuit breakers and pools: max_requests in the cluster entry, max_pending and each pool's clusters and timeout", () => {
    const m = model([route('canary', {}, 'v2')]);
    m.clusters = [
      cluster('v1', [ep('127.0.0.1', 1)], { maxPendingRequests: 3, connectTimeoutMs: 500 }),
      cluster('v2', [ep('127.0.0.1', 1), ep('127.0.0.1', 2)], { maxRequests: 7, connectTimeoutMs: 200 }),
    ];
    const d = desiredL7(m, ids, anchor, () => 0, assignClusterIds);
    const v2 = [...d.tables.clusters.values()]
      .map((e) => l7Cluster.decode(e.value))
      .find((c) => c.endpoint_count === 2);
    assert.equal(v2?.max_requests, 7);
    assert.deepEqual([...d.maxPending], [[11, 3]]);
    // an endpoint in both clusters: its failed connects count for both; the shorter timeout applies
    assert.deepEqual(d.endpoints.get('127.0.0.1:1'), { clusterIds: [12, 11], connectTimeoutMs: 200 });
    assert.deepEqual(d.endpoints.get('127.0.0.1:2'), { clusterIds: [12], connectTimeoutMs: 200 });
  });

  test('over the limits: refused naming the listener, virtual host and route', () => {
    const many = Array.from({ length: 17 }, (_, i) => route(`r${i}`, {}, 'v1'));
    assert.throws(
      () => desiredL7(model(many), ids, anchor, () => 0, assignClusterIds),
      /listener web virtual host web: 17 routes, at most 16/,
    );
    const long = [route('long', { path: { kind: 'prefix', value: `/${'x'.repeat(200)}` } }, 'v1')];
    assert.throws(
      () => desiredL7(model(long), ids, anchor, () => 0, assignClusterIds),
      /route long: path: .* longer than 128 bytes/,
    );
  });
});
