/**
 * Route hash policies (consistent hashing on a header or cookie): TOML `hash_key` on a route with its errors at
 * file:line:key, xDS RouteAction.hash_policy as istiod encodes a DestinationRule's consistentHash (and what stays
 * unenforced), and the kernel entries (the route's captured header, the cluster's table positions).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { L7_HASH_COOKIE, L7_HASH_HEADER } from '../../src/abi/kernel.js';
import { emptyState } from '../../src/api/xds/convert.js';
import { decodeCluster, decodeListener, decodeLoadAssignment, decodeRouteConfig } from '../../src/api/xds/decode.js';
import { convert } from '../../src/api/xds/model-builder.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { desiredL7 } from '../../src/l7/encode.js';
import { l7Hash } from '../../src/l7/hash.js';
import { l7Cluster, l7Route, NO_POS, SLOT } from '../../src/l7/layouts.js';
import { L7_HASH_LIMITS } from '../../src/model/l7-limits.js';
import { routesText } from '../../src/model/route-text.js';
import type { MeshModel } from '../../src/model/types.js';
import {
  httpListener,
  loadAssignment,
  routeAction,
  routeConfig,
  cluster as xdsCluster,
} from '../fixtures/xds-server.js';
import { cluster, ep, header, listener, route, vhost } from '../support/model-builders.js';
import { errorsOf, PATH, toml } from '../support/toml-config.js';

// Lines 1..12: two clusters, the second round robin; line 13 on: the listener.
const CLUSTERS = [
  '[[clusters]]',
  'name = "users"',
  'lb_policy = "maglev"',
  'endpoints = [ { address = "127.48.1.11", port = 36001 }, { address = "127.48.1.12", port = 36002 } ]',
  '[[clusters]]',
  'name = "rr"',
  'endpoints = [ { address = "127.48.1.13", port = 36003 } ]',
  '',
  '',
  '',
  '',
  '',
];
const LISTENER = [
  '[[listeners]]',
  'name = "web"',
  'address = "127.48.1.1"',
  'port = 9080',
  'protocol = "http"',
  'cluster = "rr"',
];
/** Line 19 on: the routes. */
const withRoutes = (...lines: string[]) => toml(...CLUSTERS, ...LISTENER, ...lines);

describe('TOML hash_key on a route', () => {
  test('header (lower-cased) and cookie (as written)', () => {
    const config = parseConfig(
      withRoutes(
        '[[listeners.routes]]',
        'match = { path_prefix = "/a" }',
        'cluster = "users"',
        'hash_key = { header = "X-User" }',
        '[[listeners.routes]]',
        'cluster = "users"',
        'hash_key = { cookie = "Session" }',
      ),
      PATH,
    );
    const routes = config.model.listeners[0]?.virtualHosts?.[0]?.routes;
    assert.deepEqual(
      routes?.map((r) => r.hashPolicy),
      [
        { kind: 'header', name: 'x-user' },
        { kind: 'cookie', name: 'Session' },
      ],
    );
  });

  const cases: Array<[string, string[], string[]]> = [
    [
      'both header and cookie',
      ['[[listeners.routes]]', 'cluster = "users"', 'hash_key = { header = "x", cookie = "y" }'],
      ['kmesh.toml:21: listeners[0].routes[0].hash_key: needs exactly one of header = "name" or cookie = "name"'],
    ],
    [
      'neither (an empty table)',
      ['[[listeners.routes]]', 'cluster = "users"', 'hash_key = {}'],
      ['kmesh.toml:21: listeners[0].routes[0].hash_key: needs exactly one of header = "name" or cookie = "name"'],
    ],
    [
      'the L4 form on a route',
      ['[[listeners.routes]]', 'cluster = "users"', 'hash_key = "cgroup"'],
      ['kmesh.toml:21: listeners[0].routes[0].hash_key: must be a table, got "cgroup"'],
    ],
    [
      'an unknown key',
      ['[[listeners.routes]]', 'cluster = "users"', 'hash_key = { query = "id" }'],
      [
        'kmesh.toml:21: listeners[0].routes[0].hash_key: needs exactly one of header = "name" or cookie = "name"',
        'kmesh.toml:21: listeners[0].routes[0].hash_key.query: unknown key',
      ],
    ],
    [
      'an empty name',
      ['[[listeners.routes]]', 'cluster = "users"', 'hash_key = { cookie = "" }'],
      [
        'kmesh.toml:21: listeners[0].routes[0].hash_key.cookie: must be a non-empty string, got ""',
        'kmesh.toml:21: listeners[0].routes[0].hash_key: needs exactly one of header = "name" or cookie = "name"',
      ],
    ],
    [
      'a name that is no header name',
      ['[[listeners.routes]]', 'cluster = "users"', 'hash_key = { header = "x user" }'],
      ['kmesh.toml:21: listeners[0].routes[0].hash_key.header: not a header name, got "x user"'],
    ],
    [
      'a name over the limit',
      [
        '[[listeners.routes]]',
        'cluster = "users"',
        `hash_key = { cookie = "${'c'.repeat(L7_HASH_LIMITS.nameBytes + 1)}" }`,
      ],
      [
        `kmesh.toml:21: listeners[0].routes[0].hash_key.cookie: longer than ${L7_HASH_LIMITS.nameBytes} bytes (${L7_HASH_LIMITS.nameBytes + 1})`,
      ],
    ],
    [
      'a route whose cluster does not hash',
      ['[[listeners.routes]]', 'cluster = "rr"', 'hash_key = { header = "x-user" }'],
      [
        'kmesh.toml:21: listeners[0].routes[0].hash_key.header: applies to clusters with lb_policy maglev or ring_hash; cluster "rr" is round_robin',
      ],
    ],
  ];
  for (const [name, lines, expected] of cases) {
    test(name, () => assert.deepEqual(errorsOf(withRoutes(...lines)), expected));
  }

  test('a hashed header counts toward the header names one listener captures', () => {
    const routes = Array.from({ length: 8 }, (_, i) => [
      '[[listeners.routes]]',
      `match = { headers = [ { name = "x-${i}", present = true } ] }`,
      'cluster = "users"',
    ]);
    const errors = errorsOf(
      withRoutes(...routes.flat(), '[[listeners.routes]]', 'cluster = "users"', 'hash_key = { cookie = "s" }'),
    );
    assert.match(errors[0] ?? '', /the routes match on 9 different header names \(.*cookie\); at most 8 per listener/);
  });
});

describe('xDS RouteAction.hash_policy', () => {
  const decode = (hashPolicy: unknown[]) =>
    decodeRouteConfig(
      routeConfig('9080', [
        {
          name: 'vh',
          domains: ['*'],
          routes: [{ name: 'default', match: { prefix: '/' }, route: { ...routeAction('c'), hashPolicy } }],
        },
      ]).value,
      0,
    ).vhosts[0];

  test("istiod's consistentHash httpHeaderName: a one-route virtual host becomes an HTTP route that hashes", () => {
    const vh = decode([{ header: { headerName: 'X-User' } }]);
    assert.deepEqual(vh?.http?.routes[0]?.hashPolicy, { kind: 'header', name: 'x-user' });
    assert.deepEqual(vh?.l4, [{ cluster: 'c', weight: 1 }], 'the catch-all stays the default');
    assert.deepEqual(vh?.unenforced, []);
  });

  test('istiod shape end to end: a RING_HASH cluster and its route with a header hash policy → an L7 route that hashes', () => {
    const name = 'outbound|9080||reviews.default.svc.cluster.local';
    const s = emptyState();
    s.clusters.set(name, decodeCluster(xdsCluster({ name, lbPolicy: 'ring_hash' }).value, 0));
    s.assignments.set(
      name,
      decodeLoadAssignment(loadAssignment(name, [{ address: '127.48.1.20', port: 36010 }]).value, 0),
    );
    s.listeners.set('0.0.0.0_9080', decodeListener(httpListener(9080).value, 0));
    const rds = routeConfig('9080', [
      {
        name: 'reviews.default.svc.cluster.local:9080',
        domains: ['reviews.default.svc.cluster.local', '127.48.1.9', '127.48.1.9:9080'],
        routes: [
          {
            name: 'default',
            match: { prefix: '/' },
            route: { cluster: name, timeout: {}, retryPolicy: {}, hashPolicy: [{ header: { headerName: 'x-user' } }] },
          },
        ],
      },
    ]);
    s.routes.set(rds.name, decodeRouteConfig(rds.value, 0));
    const { model } = convert(s, new Map());
    assert.equal(model.clusters[0]?.lbPolicy, 'ring_hash');
    const l = model.listeners.find((x) => x.address === '127.48.1.9');
    assert.deepEqual(l?.virtualHosts?.[0]?.routes[0]?.hashPolicy, { kind: 'header', name: 'x-user' });
    assert.deepEqual(l?.routes, [{ cluster: name, weight: 1 }], 'non-HTTP connections keep the cluster');
  });

  test('httpCookie without ttl is enforced; several policies: the first, the rest listed', () => {
    const vh = decode([{ cookie: { name: 'session' }, terminal: true }, { header: { headerName: 'x-b' } }]);
    assert.deepEqual(vh?.http?.routes[0]?.hashPolicy, { kind: 'cookie', name: 'session' });
    assert.match(vh?.unenforced[0]?.description ?? '', /hash policy: 1 after the first \(only the first is hashed\)/);
  });

  test("istiod's httpCookie (always with a ttl): hashed when sent; generating it is listed as unenforced", () => {
    const vh = decode([{ cookie: { name: 'user', ttl: { seconds: 60 }, path: '/' } }]);
    assert.deepEqual(vh?.http?.routes[0]?.hashPolicy, { kind: 'cookie', name: 'user' });
    assert.match(
      vh?.unenforced[0]?.description ?? '',
      /programmed; not enforced: hash policy: cookie generation \(ttl\)/,
    );
  });

  test('a header policy naming no header: the route configuration is NACKed, naming the route', () => {
    assert.throws(
      () => decode([{ header: { headerName: '' } }]),
      /route configuration 9080 vhost vh: route default: hash_key.header: is empty/,
    );
  });

  test('a route that cannot be programmed keeps the virtual host L4, hash policy or not', () => {
    const vh = decodeRouteConfig(
      routeConfig('9080', [
        {
          name: 'vh',
          domains: ['*'],
          routes: [
            {
              name: 're',
              match: { safeRegex: { regex: '.*' } },
              route: { ...routeAction('c'), hashPolicy: [{ header: { headerName: 'x' } }] },
            },
          ],
        },
      ]).value,
      0,
    ).vhosts[0];
    assert.equal(vh?.http, undefined);
    assert.deepEqual(vh?.l4, [{ cluster: 'c', weight: 1 }]);
  });

  for (const [name, policy, reason] of [
    ['a query parameter', { queryParameter: { name: 'id' } }, 'query parameter'],
    ['the source IP', { connectionProperties: { sourceIp: true } }, 'source IP'],
    ['filter state', { filterState: { key: 'k' } }, 'filter state'],
  ] as const) {
    test(`${name}: not enforced, listed, and the virtual host stays L4`, () => {
      const vh = decode([policy]);
      assert.equal(vh?.http, undefined);
      assert.match(vh?.unenforced[0]?.description ?? '', new RegExp(`not enforced: hash policy \\(${reason}\\)`));
    });
  }
});

describe('hash policy map entries', () => {
  const model = (): MeshModel => {
    const web = listener('web', '127.48.1.1', 9080, [['users', 1]], 'http');
    web.virtualHosts = [
      vhost(
        '*',
        ['*'],
        [
          {
            ...route('a', { headers: [header('x-a', { kind: 'present' })] }, 'users'),
            hashPolicy: { kind: 'cookie', name: 'sid' },
          },
          { ...route('b', {}, 'users'), hashPolicy: { kind: 'header', name: 'x-a' } },
        ],
      ),
    ];
    const eps = [ep('127.48.1.11', 1), ep('::1', 2), ep('127.48.1.12', 3)];
    eps[0] = { ...(eps[0] as (typeof eps)[0]), priority: 1 };
    return { listeners: [web], clusters: [cluster('users', eps, { lbPolicy: 'ring_hash' })] };
  };
  const ids = (names: string[]) => new Map(names.map((n, i) => [n, i + 1]));
  const out = desiredL7(model(), new Map([['users', 7]]), { address: '127.0.0.1', port: 1 }, () => 5, ids);

  test('a route names its captured header; a cookie also its name hash and length', () => {
    const routes = [...out.tables.routes.values()].map((e) => l7Route.decode(e.value));
    const byId = routes.sort((a, b) => Number(a.route_id) - Number(b.route_id));
    assert.deepEqual(
      byId.map((r) => [r.hash_kind, r.hash_slot, r.cookie_len, r.cookie_hash]),
      [
        [L7_HASH_COOKIE, SLOT.firstHeader + 1, 3, l7Hash('sid')],
        [L7_HASH_HEADER, SLOT.firstHeader, 0, 0n],
      ],
    );
  });

  test('a hashed header name is matched case-insensitively, as the kernel lower-cases request header names', () => {
    const mixed = model();
    const routes = mixed.listeners[0]?.virtualHosts?.[0]?.routes ?? [];
    routes[1] = { ...(routes[1] as (typeof routes)[1]), hashPolicy: { kind: 'header', name: 'X-A' } };
    const encoded = desiredL7(mixed, new Map([['users', 7]]), { address: '127.0.0.1', port: 1 }, () => 5, ids);
    const slots = [...encoded.tables.routes.values()]
      .map((e) => l7Route.decode(e.value))
      .sort((a, b) => Number(a.route_id) - Number(b.route_id))
      .map((r) => r.hash_slot);
    assert.deepEqual(slots, [SLOT.firstHeader + 1, SLOT.firstHeader]);
  });

  test('kmeshctl dump shows the hash policy with the route', () => {
    assert.deepEqual(routesText(model()).web?.routes, [
      '[*] a: header x-a present -> users (hash cookie sid)',
      '[*] b: any request -> users (hash header x-a)',
    ]);
  });

  test("table positions follow the kernel's endpoint order (priority 0 first); an IPv6 endpoint has no pool", () => {
    const c = l7Cluster.decode([...out.tables.clusters.values()][0]?.value as Buffer);
    // L4 order: ::1 (p0), 127.48.1.12 (p0), 127.48.1.11 (p1); pools here: .11, .12
    assert.deepEqual((c.table_pos as number[]).slice(0, 4), [NO_POS, 1, 0, NO_POS]);
  });

  test('each pool position names its endpoint as the kernel keys its ejection state (IPv4 bytes, port)', () => {
    const c = l7Cluster.decode([...out.tables.clusters.values()][0]?.value as Buffer);
    assert.deepEqual([...(c.ep_ip4 as Buffer).subarray(0, 12)], [127, 48, 1, 11, 127, 48, 1, 12, 0, 0, 0, 0]);
    assert.deepEqual((c.ep_port as number[]).slice(0, 3), [1, 3, 0]);
  });
});
