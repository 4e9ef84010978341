/** Conversion of decoded xDS resources into the MeshModel: shapes istiod sends, warming, L4 vs L7 routes. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptyState, vipsFromDomains, type XdsState } from '../../src/api/xds/convert.js';
import { decodeCluster, decodeListener, decodeLoadAssignment, decodeRouteConfig } from '../../src/api/xds/decode.js';
import { convert } from '../../src/api/xds/model-builder.js';
import { TYPE, xdsTypes } from '../../src/api/xds/protos.js';
import { XdsResourceError } from '../../src/api/xds/resources.js';
import {
  cluster,
  type Dest,
  type EpSpec,
  httpListener,
  loadAssignment,
  type Res,
  routeAction,
  routeConfig,
  routeConfigObject,
  tcpListener,
  type VhostSpec,
} from '../fixtures/xds-server.js';

function state(parts: { clusters?: Res[]; eds?: Res[]; listeners?: Res[]; routes?: Res[] }): XdsState {
  const s = emptyState();
  for (const [i, r] of (parts.clusters ?? []).entries()) s.clusters.set(r.name, decodeCluster(r.value, i));
  for (const [i, r] of (parts.eds ?? []).entries()) s.assignments.set(r.name, decodeLoadAssignment(r.value, i));
  for (const [i, r] of (parts.listeners ?? []).entries()) s.listeners.set(r.name, decodeListener(r.value, i));
  for (const [i, r] of (parts.routes ?? []).entries()) s.routes.set(r.name, decodeRouteConfig(r.value, i));
  return s;
}

/** A Listener built from a protobufjs object, for shapes the fixture builders do not make. */
function rawListener(obj: Record<string, unknown>): Res {
  const t = xdsTypes();
  return {
    name: String(obj.name),
    typeUrl: TYPE.listener,
    value: t.Listener.encode(t.Listener.fromObject(obj)).finish(),
  };
}

function anyOf(
  typeName: string,
  typeUrl: string,
  obj: Record<string, unknown>,
): { typeUrl: string; value: Uint8Array } {
  const t = xdsTypes().root.lookupType(typeName);
  return { typeUrl, value: t.encode(t.fromObject(obj)).finish() };
}

const eps = (...ports: number[]): EpSpec[] => ports.map((p) => ({ address: '127.0.0.1', port: p }));

describe('xds conversion', () => {
  it('TCP listener with tcp_proxy → one listener on its VIP; EDS cluster with weights, locality, priority', () => {
    const s = state({
      clusters: [cluster({ name: 'outbound|9080||reviews', lbPolicy: 'least_request' })],
      eds: [
        loadAssignment('outbound|9080||reviews', [
          { address: '127.0.0.1', port: 9081, weight: 3, locality: { region: 'r1', zone: 'z1' } },
          { address: '127.0.0.2', port: 9081, priority: 1 },
          { address: '127.0.0.3', port: 9081, health: 'UNHEALTHY' },
          { address: '127.0.0.4', port: 9081, health: 'DRAINING' },
        ]),
      ],
      listeners: [tcpListener('127.10.0.5', 9080, 'outbound|9080||reviews')],
    });
    const c = convert(s, new Map());
    assert.deepEqual(c.model.listeners, [
      {
        name: '127.10.0.5_9080',
        address: '127.10.0.5',
        port: 9080,
        protocol: 'tcp',
        routes: [{ cluster: 'outbound|9080||reviews', weight: 1 }],
        source: 'xds',
      },
    ]);
    assert.equal(c.model.clusters.length, 1);
    const cl = c.model.clusters[0];
    assert.equal(cl?.lbPolicy, 'least_request');
    assert.equal(cl?.source, 'xds');
    assert.deepEqual(cl?.endpoints, [
      { address: '127.0.0.1', port: 9081, weight: 3, locality: { region: 'r1', zone: 'z1' } },
      { address: '127.0.0.2', port: 9081, weight: 1, priority: 1 },
    ]);
    assert.deepEqual(c.edsNames, ['outbound|9080||reviews']);
  });

  it('tcp_proxy weighted_clusters keep weights, zero weights dropped', () => {
    const dest: Dest = [
      { cluster: 'a', weight: 90 },
      { cluster: 'b', weight: 10 },
      { cluster: 'c', weight: 0 },
    ];
    const s = state({
      clusters: [cluster({ name: 'a' }), cluster({ name: 'b' }), cluster({ name: 'c' })],
      eds: [loadAssignment('a', eps(1)), loadAssignment('b', eps(2))],
      listeners: [tcpListener('127.10.0.6', 80, dest)],
    });
    const c = convert(s, new Map());
    assert.deepEqual(c.model.listeners[0]?.routes, [
      { cluster: 'a', weight: 90 },
      { cluster: 'b', weight: 10 },
    ]);
  });

  it('warming: a listener waits for endpoints of all its clusters; empty clusters are not programmed', () => {
    const s = state({
      clusters: [cluster({ name: 'a' })],
      listeners: [tcpListener('127.10.0.7', 80, 'a'), tcpListener('127.10.0.8', 80, 'missing')],
    });
    const c1 = convert(s, new Map());
    assert.equal(c1.model.listeners.length, 0);
    assert.equal(c1.model.clusters.length, 0);
    assert.deepEqual(c1.warming.sort(), ['127.10.0.7_80', '127.10.0.8_80']);
    s.assignments.set('a', decodeLoadAssignment(loadAssignment('a', eps(1)).value, 0));
    const c2 = convert(s, new Map());
    assert.deepEqual(
      c2.model.listeners.map((l) => l.name),
      ['127.10.0.7_80'],
    );
    s.assignments.set('a', decodeLoadAssignment(loadAssignment('a', []).value, 0));
    const c3 = convert(s, new Map());
    assert.equal(c3.model.listeners.length, 0, 'a cluster that empties takes its listener out');
    assert.equal(c3.model.clusters.length, 0);
  });

  it('HTTP 0.0.0.0_<port> + RDS: VIP listeners from IP domains; hostnames ignored; never a wildcard', () => {
    const vhosts: VhostSpec[] = [
      {
        name: 'reviews.default.svc.cluster.local:9080',
        domains: ['reviews.default.svc.cluster.local', 'reviews', '127.10.0.9', '127.10.0.9:9080', '127.10.0.10:1234'],
        dest: 'r1',
      },
      {
        name: 'ratings:9080',
        domains: ['ratings', '[::1]:9080'],
        dest: [
          { cluster: 'r1', weight: 1 },
          { cluster: 'r2', weight: 3 },
        ],
      },
      { name: 'allow_any', domains: ['*'], dest: 'PassthroughCluster' },
    ];
    const s = state({
      clusters: [
        cluster({ name: 'r1' }),
        cluster({ name: 'r2' }),
        cluster({ name: 'PassthroughCluster', type: 'ORIGINAL_DST' }),
      ],
      eds: [loadAssignment('r1', eps(1)), loadAssignment('r2', eps(2))],
      listeners: [httpListener(9080)],
      routes: [routeConfig('9080', vhosts)],
    });
    const c = convert(s, new Map());
    assert.deepEqual(c.rdsNames, ['9080']);
    assert.deepEqual(
      c.model.listeners.map((l) => [l.name, l.address, l.port, l.protocol, l.routes]),
      [
        ['127.10.0.9_9080', '127.10.0.9', 9080, 'http', [{ cluster: 'r1', weight: 1 }]],
        [
          '[::1]_9080',
          '::1',
          9080,
          'http',
          [
            { cluster: 'r1', weight: 1 },
            { cluster: 'r2', weight: 3 },
          ],
        ],
      ],
    );
    assert.ok(!c.model.clusters.some((cl) => cl.name === 'PassthroughCluster'), 'ORIGINAL_DST not programmed');
    assert.ok(c.model.listeners.every((l) => l.address !== '0.0.0.0' && l.address !== '::'));
  });

  it('RDS not yet received: HTTP listener only subscribes', () => {
    const s = state({ listeners: [httpListener(8080, 'rc')] });
    const c = convert(s, new Map());
    assert.deepEqual(c.rdsNames, ['rc']);
    assert.equal(c.model.listeners.length, 0);
  });

  it("finer L7 routes: programmed as the listener's HTTP routes, the catch-all is the connect-time default", () => {
    const routes = [
      {
        name: 'v2-header',
        match: { prefix: '/', headers: [{ name: 'end-user', exactMatch: 'jason' }] },
        route: routeAction('r2'),
      },
      { name: 'api', match: { path: '/api' }, route: routeAction('r2') },
      { name: 'default', match: { prefix: '/' }, route: routeAction('r1') },
    ];
    const s = state({
      clusters: [cluster({ name: 'r1' }), cluster({ name: 'r2' })],
      eds: [loadAssignment('r1', eps(1)), loadAssignment('r2', eps(2))],
      listeners: [httpListener(9080)],
      routes: [routeConfig('9080', [{ name: 'vh', domains: ['127.10.0.11'], routes }])],
    });
    const l = convert(s, new Map()).model.listeners[0];
    assert.deepEqual(l?.routes, [{ cluster: 'r1', weight: 1 }]);
    assert.equal(l?.unenforcedRoutes, undefined);
    assert.deepEqual(l?.virtualHosts, [
      {
        name: 'vh',
        domains: ['*'],
        routes: [
          {
            name: 'v2-header',
            match: { headers: [{ name: 'end-user', matcher: { kind: 'exact', value: 'jason' }, invert: false }] },
            clusters: [{ cluster: 'r2', weight: 1 }],
          },
          {
            name: 'api',
            match: { headers: [], path: { kind: 'exact', value: '/api' } },
            clusters: [{ cluster: 'r2', weight: 1 }],
          },
          { name: 'default', match: { headers: [] }, clusters: [{ cluster: 'r1', weight: 1 }] },
        ],
      },
    ]);
  });

  it('L7-only vhost without a catch-all is not programmed', () => {
    const routes = [
      { name: 'a', match: { path: '/a' }, route: routeAction('r1') },
      { name: 'b', match: { path: '/b' }, route: routeAction('r2') },
    ];
    const s = state({
      clusters: [cluster({ name: 'r1' }), cluster({ name: 'r2' })],
      eds: [loadAssignment('r1', eps(1)), loadAssignment('r2', eps(2))],
      listeners: [httpListener(9080)],
      routes: [routeConfig('9080', [{ name: 'vh', domains: ['127.10.0.12'], routes }])],
    });
    const c = convert(s, new Map());
    assert.equal(c.model.listeners.length, 0);
    assert.ok(c.notes.some((n) => n.includes('not programmed')));
  });

  it('STATIC cluster endpoints; STRICT_DNS resolved from the DNS table', () => {
    const s = state({
      clusters: [
        cluster({ name: 's', type: 'STATIC', lbPolicy: 'maglev', endpoints: eps(7) }),
        cluster({
          name: 'd',
          type: 'STRICT_DNS',
          lbPolicy: 'ring_hash',
          endpoints: [{ address: 'db.local', port: 5432, weight: 2 }],
        }),
      ],
    });
    const c = convert(s, new Map([['db.local', ['127.0.0.20', '127.0.0.21']]]));
    assert.deepEqual(c.dnsHosts, ['db.local']);
    const d = c.model.clusters.find((x) => x.name === 'd');
    assert.equal(d?.lbPolicy, 'ring_hash');
    assert.deepEqual(
      d?.endpoints.map((e) => [e.address, e.port, e.weight]),
      [
        ['127.0.0.20', 5432, 2],
        ['127.0.0.21', 5432, 2],
      ],
    );
    assert.equal(c.model.clusters.find((x) => x.name === 's')?.lbPolicy, 'maglev');
  });

  it("istiod's DestinationRule shapes: outlier detection, circuit breaker, connect timeout; the rest listed", () => {
    const s = state({
      clusters: [
        cluster({
          name: 'cb',
          lbPolicy: 'least_request',
          circuitBreakers: {
            thresholds: [{ maxConnections: { value: 100 }, maxRequests: { value: 5 }, maxRetries: { value: 3 } }],
          },
          // istiod: consecutive5xxErrors → consecutive_5xx, split_external_local_origin_errors false
          outlierDetection: {
            consecutive_5xx: { value: 7 },
            interval: { seconds: 5 },
            baseEjectionTime: { seconds: 30 },
            maxEjectionPercent: { value: 50 },
          },
          extra: {
            connectTimeout: { seconds: 2, nanos: 500_000_000 },
            leastRequestLbConfig: { choiceCount: { value: 3 } },
          },
        }),
      ],
      eds: [loadAssignment('cb', eps(1))],
    });
    const cl = convert(s, new Map()).model.clusters[0];
    assert.deepEqual(cl?.outlierDetection, {
      consecutiveFailures: 7,
      baseEjectionTimeMs: 30_000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 50,
      intervalMs: 5000,
    });
    assert.equal(cl?.maxConnections, 100);
    assert.equal(cl?.maxRequests, 5);
    assert.equal(cl?.maxPendingRequests, undefined);
    assert.equal(cl?.connectTimeoutMs, 2500);
    assert.deepEqual(cl?.unenforced, [
      'circuit_breakers max_retries (per request: needs L7)',
      'least_request_lb_config.choice_count 3 (2 used)',
    ]);
  });

  it('split_external_local_origin_errors: consecutive_local_origin_failure is the threshold', () => {
    const s = state({
      clusters: [
        cluster({
          name: 'lo',
          outlierDetection: {
            splitExternalLocalOriginErrors: true,
            consecutiveLocalOriginFailure: { value: 2 },
            consecutive_5xx: { value: 9 },
          },
        }),
      ],
      eds: [loadAssignment('lo', eps(1))],
    });
    assert.equal(convert(s, new Map()).model.clusters[0]?.outlierDetection?.consecutiveFailures, 2);
  });

  it('nonsense is NACKed naming the cluster: 200 % ejection, priority beyond 7, zero max_connections', () => {
    assert.throws(
      () => state({ clusters: [cluster({ name: 'bad', outlierDetection: { maxEjectionPercent: { value: 200 } } })] }),
      (e: unknown) => e instanceof XdsResourceError && /cluster bad: .*max_ejection_percent 200/.test(e.message),
    );
    assert.throws(
      () =>
        state({
          clusters: [cluster({ name: 'z', circuitBreakers: { thresholds: [{ maxConnections: { value: 0 } }] } })],
        }),
      (e: unknown) => e instanceof XdsResourceError && /cluster z: .*max_connections 0/.test(e.message),
    );
    assert.throws(
      () => state({ eds: [loadAssignment('p', [{ address: '127.0.0.1', port: 1, priority: 9 }])] }),
      (e: unknown) => e instanceof XdsResourceError && /load assignment p: priority 9/.test(e.message),
    );
  });

  it('CLA priorities and, with locality_weighted_lb_config, locality weights', () => {
    const a = { region: 'r1', zone: 'a' };
    const b = { region: 'r1', zone: 'b' };
    const s = state({
      clusters: [cluster({ name: 'lw', extra: { commonLbConfig: { localityWeightedLbConfig: {} } } })],
      eds: [
        loadAssignment('lw', [
          { address: '127.0.0.1', port: 1, locality: a, localityWeight: 3 },
          { address: '127.0.0.2', port: 1, locality: b, localityWeight: 1 },
          { address: '127.0.0.3', port: 1, locality: b, localityWeight: 1, priority: 1 },
        ]),
      ],
    });
    const cl = convert(s, new Map()).model.clusters[0];
    assert.deepEqual(
      cl?.endpoints.map((e) => e.priority ?? 0),
      [0, 0, 1],
    );
    assert.deepEqual(cl?.localityWeights, [
      { locality: { region: 'r1', zone: 'a' }, weight: 3 },
      { locality: { region: 'r1', zone: 'b' }, weight: 1 },
    ]);
  });

  it('more than 16 weighted clusters is rejected with the listener name', () => {
    const names = Array.from({ length: 17 }, (_, i) => `c${i}`);
    const s = state({
      clusters: names.map((n) => cluster({ name: n })),
      eds: names.map((n) => loadAssignment(n, eps(1))),
      listeners: [
        tcpListener(
          '127.10.0.13',
          80,
          names.map((n) => ({ cluster: n, weight: 1 })),
        ),
      ],
    });
    assert.throws(
      () => convert(s, new Map()),
      (e: Error) => e instanceof XdsResourceError && /127\.10\.0\.13_80.*17 weighted/.test(e.message),
    );
  });

  it('address clash: first listener by name wins, the other is noted', () => {
    const s = state({
      clusters: [cluster({ name: 'a' })],
      eds: [loadAssignment('a', eps(1))],
      listeners: [tcpListener('127.10.0.14', 80, 'a', 'x'), tcpListener('127.10.0.14', 80, 'a', 'y')],
    });
    const c = convert(s, new Map());
    assert.deepEqual(
      c.model.listeners.map((l) => l.name),
      ['x'],
    );
    assert.ok(c.notes.some((n) => n.includes('already programmed by x')));
  });

  it('vipsFromDomains', () => {
    assert.deepEqual(
      vipsFromDomains(['a', '127.1.1.1', '127.1.1.1:80', '127.1.1.2:81', '[::1]:80', '::2', '0.0.0.0', '*'], 80),
      ['127.1.1.1', '::1', '::2'],
    );
  });

  it('wildcard listener: filter chains with single-host prefix_ranges and destination_port give listeners', () => {
    const tcp = (cluster: string) => ({
      filters: [
        {
          name: 'tcp',
          typedConfig: anyOf('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', TYPE.tcpProxy, { cluster }),
        },
      ],
    });
    const l = rawListener({
      name: 'virtualOutbound',
      address: { socketAddress: { address: '0.0.0.0', portValue: 15001 } },
      useOriginalDst: { value: true },
      filterChains: [
        {
          filterChainMatch: {
            prefixRanges: [{ addressPrefix: '127.10.5.1', prefixLen: { value: 32 } }],
            destinationPort: { value: 7070 },
          },
          ...tcp('a'),
        },
        {
          filterChainMatch: {
            prefixRanges: [{ addressPrefix: '127.10.0.0', prefixLen: { value: 16 } }],
            destinationPort: { value: 7071 },
          },
          ...tcp('a'),
        },
        { name: 'PassthroughFilterChain', ...tcp('PassthroughCluster') },
      ],
    });
    const s = state({ clusters: [cluster({ name: 'a' })], eds: [loadAssignment('a', eps(1))], listeners: [l] });
    const c = convert(s, new Map());
    assert.deepEqual(
      c.model.listeners.map((x) => [x.name, x.address, x.port]),
      [['virtualOutbound~127.10.5.1:7070', '127.10.5.1', 7070]],
    );
    assert.ok(c.notes.some((n) => /wildcard tcp_proxy/.test(n)));
  });

  it('inbound listeners are ignored; inline route_config works like RDS', () => {
    const hcm = anyOf('envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager', TYPE.hcm, {
      statPrefix: 'x',
      routeConfig: routeConfigObject('inline', [{ name: 'vh', domains: ['127.10.6.1:8000'], dest: 'a' }]),
    });
    const inbound = rawListener({
      name: 'virtualInbound',
      address: { socketAddress: { address: '127.10.6.2', portValue: 15006 } },
      trafficDirection: 1,
      filterChains: [{ filters: [{ name: 'hcm', typedConfig: hcm }] }],
    });
    const inline = rawListener({
      name: '0.0.0.0_8000',
      address: { socketAddress: { address: '0.0.0.0', portValue: 8000 } },
      filterChains: [{ filters: [{ name: 'hcm', typedConfig: hcm }] }],
    });
    const s = state({
      clusters: [cluster({ name: 'a' })],
      eds: [loadAssignment('a', eps(1))],
      listeners: [inbound, inline],
    });
    const c = convert(s, new Map());
    assert.deepEqual(
      c.model.listeners.map((x) => [x.name, x.address, x.port, x.protocol]),
      [['127.10.6.1_8000', '127.10.6.1', 8000, 'http']],
    );
    assert.deepEqual(c.rdsNames, []);
  });
});
