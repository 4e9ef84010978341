/**
 * HTTP routes in kmesh.toml: `[[listeners.routes]]`, `[[listeners.virtual_hosts]]`, and every bad case reported at
 * the exact "kmesh.toml:<line>: <key>".
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/controller/config/load.js';
import { L7_LIMITS } from '../../src/l7/limits.js';
import { errorsOf, PATH, toml } from '../support/toml-config.js';

const CLUSTERS = [
  '[[clusters]]',
  'name = "v1"',
  'endpoints = [ { address = "127.46.0.11", port = 36001 } ]',
  '[[clusters]]',
  'name = "v2"',
  'endpoints = [ { address = "127.46.0.12", port = 36002 } ]',
];
// Lines 7..12.
const HTTP_LISTENER = [
  '[[listeners]]',
  'name = "reviews"',
  'address = "127.46.0.1"',
  'port = 9080',
  'protocol = "http"',
  'cluster = "v1"',
];
/** The file with the listener's route lines after it (first route line = line 13). */
const withRoutes = (...lines: string[]) => toml(...CLUSTERS, ...HTTP_LISTENER, ...lines);

describe('TOML HTTP routes: valid shapes', () => {
  test('[[listeners.routes]]: ordered routes of one virtual host for every domain', () => {
    const config = parseConfig(
      withRoutes(
        '[[listeners.routes]]',
        'name = "canary"',
        'match = { path_prefix = "/v2", headers = [ { name = "X-Canary", exact = "1" } ], method = "GET" }',
        'cluster = "v2"',
        '',
        '[[listeners.routes]]',
        'match = { path = "/login", headers = [ { name = "x-user", absent = true }, { name = "x-a", prefix = "b", invert = true } ] }',
        'cluster = "v2"',
        '',
        '[[listeners.routes]]',
        'match = { path_separated_prefix = "/api", headers = [ { name = "x-b", suffix = "c" }, { name = "x-c", present = true }, { name = "x-d", exact = "" } ] }',
        'weighted_clusters = [ { cluster = "v1", weight = 90 }, { cluster = "v2", weight = 10 } ]',
        '',
        '[[listeners.routes]]',
        'cluster = "v1"',
      ),
      PATH,
    );
    const l = config.model.listeners[0];
    assert.deepEqual(l?.routes, [{ cluster: 'v1', weight: 1 }], 'the listener cluster stays the default');
    assert.deepEqual(l?.virtualHosts, [
      {
        name: '*',
        domains: ['*'],
        routes: [
          {
            name: 'canary',
            match: {
              path: { kind: 'prefix', value: '/v2' },
              method: 'GET',
              headers: [{ name: 'x-canary', matcher: { kind: 'exact', value: '1' }, invert: false }],
            },
            clusters: [{ cluster: 'v2', weight: 1 }],
          },
          {
            name: 'routes[1]',
            match: {
              path: { kind: 'exact', value: '/login' },
              headers: [
                { name: 'x-user', matcher: { kind: 'present' }, invert: true },
                { name: 'x-a', matcher: { kind: 'prefix', value: 'b' }, invert: true },
              ],
            },
            clusters: [{ cluster: 'v2', weight: 1 }],
          },
          {
            name: 'routes[2]',
            match: {
              path: { kind: 'separated_prefix', value: '/api' },
              headers: [
                { name: 'x-b', matcher: { kind: 'suffix', value: 'c' }, invert: false },
                { name: 'x-c', matcher: { kind: 'present' }, invert: false },
                { name: 'x-d', matcher: { kind: 'exact', value: '' }, invert: false },
              ],
            },
            clusters: [
              { cluster: 'v1', weight: 90 },
              { cluster: 'v2', weight: 10 },
            ],
          },
          { name: 'routes[3]', match: { headers: [] }, clusters: [{ cluster: 'v1', weight: 1 }] },
        ],
      },
    ]);
  });

  test('[[listeners.virtual_hosts]] with domains and their own routes; inline routes too', () => {
    const config = parseConfig(
      withRoutes(
        '[[listeners.virtual_hosts]]',
        'domains = ["API.example.com", "api.example.com:9080"]',
        '[[listeners.virtual_hosts.routes]]',
        'match = { path_prefix = "/v2" }',
        'cluster = "v2"',
        '[[listeners.virtual_hosts.routes]]',
        'cluster = "v1"',
        '',
        '[[listeners.virtual_hosts]]',
        'name = "rest"',
        'domains = ["*"]',
        'routes = [ { match = { method = "POST" }, cluster = "v2" }, { cluster = "v1" } ]',
      ),
      PATH,
    );
    const vhosts = config.model.listeners[0]?.virtualHosts;
    assert.deepEqual(
      vhosts?.map((v) => [v.name, v.domains, v.routes.map((r) => [r.name, r.match, r.clusters[0]?.cluster])]),
      [
        [
          'api.example.com',
          ['api.example.com', 'api.example.com:9080'],
          [
            ['routes[0]', { headers: [], path: { kind: 'prefix', value: '/v2' } }, 'v2'],
            ['routes[1]', { headers: [] }, 'v1'],
          ],
        ],
        [
          'rest',
          ['*'],
          [
            ['routes[0]', { headers: [], method: 'POST' }, 'v2'],
            ['routes[1]', { headers: [] }, 'v1'],
          ],
        ],
      ],
    );
  });

  test('a listener without routes keeps connect-time steering (no virtualHosts)', () => {
    const l = parseConfig(withRoutes(), PATH).model.listeners[0];
    assert.equal(l?.virtualHosts, undefined);
    assert.equal(l?.protocol, 'http');
  });

  test('routes of the second listener are located under it', () => {
    const errors = errorsOf(
      withRoutes(
        '[[listeners.routes]]',
        'cluster = "v1"',
        '[[listeners]]',
        'name = "b"',
        'address = "127.46.0.2"',
        'port = 80',
        'protocol = "http"',
        'cluster = "v1"',
        '[[listeners.routes]]',
        'cluster = "v1"',
        '[[listeners.routes]]',
        'match = { method = "get" }',
        'cluster = "v1"',
      ),
    );
    assert.deepEqual(errors, [
      'kmesh.toml:24: listeners[1].routes[1].match.method: not an upper-case HTTP method, got "get"',
    ]);
  });
});

describe('TOML HTTP routes: bad input names file:line:key', () => {
  const cases: Array<[string, string[], string[]]> = [
    [
      'unknown key in a route',
      ['[[listeners.routes]]', 'cluster = "v1"', 'prefix = "/x"'],
      ['kmesh.toml:15: listeners[0].routes[0].prefix: unknown key'],
    ],
    [
      'unknown key in a match',
      ['[[listeners.routes]]', 'match = { regex = "/x.*" }', 'cluster = "v1"'],
      ['kmesh.toml:14: listeners[0].routes[0].match.regex: unknown key'],
    ],
    [
      'match is not a table',
      ['[[listeners.routes]]', 'match = "/v2"', 'cluster = "v1"'],
      ['kmesh.toml:14: listeners[0].routes[0].match: must be a table, got "/v2"'],
    ],
    [
      'two path matchers',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { path = "/a", path_prefix = "/b" }'],
      ['kmesh.toml:15: listeners[0].routes[0].match: at most one of path, path_prefix, path_separated_prefix'],
    ],
    [
      'route with neither cluster nor weighted_clusters',
      ['[[listeners.routes]]', 'match = { path = "/a" }'],
      ['kmesh.toml:13: listeners[0].routes[0]: needs exactly one of cluster = "name" or weighted_clusters = [...]'],
    ],
    [
      'route to an unknown cluster',
      ['[[listeners.routes]]', 'match = { path = "/a" }', 'cluster = "v3"'],
      ['kmesh.toml:15: listeners[0].routes[0].cluster: unknown cluster "v3"'],
    ],
    [
      'route split with a zero weight, said as written',
      ['[[listeners.routes]]', '', 'weighted_clusters = [ { cluster = "v2", weight = 0 } ]'],
      ['kmesh.toml:15: listeners[0].routes[0].weighted_clusters[0].weight: must be an integer 1..1000000, got 0'],
    ],
    [
      'header with two kinds',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { name = "x", exact = "1", prefix = "2" } ] }'],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers[0]: needs exactly one of exact, prefix, suffix = "value", present = true or absent = true',
      ],
    ],
    [
      'header with no kind',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { name = "x" } ] }'],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers[0]: needs exactly one of exact, prefix, suffix = "value", present = true or absent = true',
      ],
    ],
    [
      'present = false',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { name = "x", present = false } ] }'],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers[0].present: must be true (write absent = true for the opposite)',
      ],
    ],
    [
      'inverted absent',
      [
        '[[listeners.routes]]',
        'cluster = "v1"',
        'match = { headers = [ { name = "x", absent = true, invert = true } ] }',
      ],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers[0].invert: absent = true is not inverted: write present = true',
      ],
    ],
    [
      'header value not a string',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { name = "x", exact = 1 } ] }'],
      ['kmesh.toml:15: listeners[0].routes[0].match.headers[0].exact: must be a string, got 1'],
    ],
    [
      'header without name',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { exact = "1" } ] }'],
      ['kmesh.toml:15: listeners[0].routes[0].match.headers[0].name: is required'],
    ],
    [
      'bad header name',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { name = "x y", exact = "1" } ] }'],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers[0].name: not a lower-case header name (or :method, :authority), got "x y"',
      ],
    ],
    [
      'empty prefix',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { headers = [ { name = "x", prefix = "" } ] }'],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers[0].prefix: is empty (a prefix of "" matches any value: use present)',
      ],
    ],
    [
      'path without a leading /',
      ['[[listeners.routes]]', 'cluster = "v1"', 'match = { path_prefix = "v2" }'],
      ['kmesh.toml:15: listeners[0].routes[0].match.path_prefix: must start with "/", got "v2"'],
    ],
    [
      'path over the string limit',
      ['[[listeners.routes]]', 'cluster = "v1"', `match = { path = "/${'a'.repeat(L7_LIMITS.maxStringBytes)}" }`],
      ['kmesh.toml:15: listeners[0].routes[0].match.path: longer than 128 bytes (129)'],
    ],
    [
      'too many headers',
      [
        '[[listeners.routes]]',
        'cluster = "v1"',
        `match = { method = "GET", headers = [ ${Array.from({ length: L7_LIMITS.headersPerRoute }, () => '{ name = "x", present = true }').join(', ')} ] }`,
      ],
      [
        'kmesh.toml:15: listeners[0].routes[0].match.headers: at most 8 header matches per route (the method counts as one), got 9',
      ],
    ],
    [
      'both routes and virtual_hosts',
      [
        '[[listeners.routes]]',
        'cluster = "v1"',
        '[[listeners.virtual_hosts]]',
        'domains = ["*"]',
        'routes = [ { cluster = "v1" } ]',
      ],
      ['kmesh.toml:15: listeners[0].virtual_hosts: use either routes (for every domain) or virtual_hosts, not both'],
    ],
    [
      'virtual host without domains or routes',
      ['[[listeners.virtual_hosts]]', 'name = "x"'],
      [
        'kmesh.toml:13: listeners[0].virtual_hosts[0].domains: is required',
        'kmesh.toml:13: listeners[0].virtual_hosts[0].routes: is required',
      ],
    ],
    [
      'domains not strings',
      ['[[listeners.virtual_hosts]]', 'domains = "a.com"', 'routes = [ { cluster = "v1" } ]'],
      ['kmesh.toml:14: listeners[0].virtual_hosts[0].domains: must be an array of strings, got "a.com"'],
    ],
    [
      'bad domain and a duplicate across virtual hosts',
      [
        '[[listeners.virtual_hosts]]',
        'domains = ["a.com", "a.*.com"]',
        'routes = [ { cluster = "v1" } ]',
        '[[listeners.virtual_hosts]]',
        'domains = ["b.com", "A.com"]',
        '[[listeners.virtual_hosts.routes]]',
        'cluster = "v1"',
      ],
      [
        'kmesh.toml:14: listeners[0].virtual_hosts[0].domains[1]: a wildcard "*" stands alone, first or last; the rest is letters, digits, ".", "-", "_": "a.*.com"',
        'kmesh.toml:17: listeners[0].virtual_hosts[1].domains[1]: "a.com" is already a domain of virtual_hosts[0]',
      ],
    ],
    [
      'a route of the second virtual host',
      [
        '[[listeners.virtual_hosts]]',
        'domains = ["a.com"]',
        '[[listeners.virtual_hosts.routes]]',
        'cluster = "v1"',
        '[[listeners.virtual_hosts]]',
        'domains = ["b.com"]',
        '[[listeners.virtual_hosts.routes]]',
        'cluster = "v1"',
        '[[listeners.virtual_hosts.routes]]',
        'match = { method = "G T" }',
        'cluster = "v1"',
      ],
      ['kmesh.toml:22: listeners[0].virtual_hosts[1].routes[1].match.method: not an upper-case HTTP method, got "G T"'],
    ],
    [
      'a bad route written inline stands on the routes line',
      ['[[listeners.virtual_hosts]]', 'domains = ["a.com"]', 'routes = [ { cluster = "v1" }, { cluster = "nope" } ]'],
      ['kmesh.toml:15: listeners[0].virtual_hosts[0].routes[1].cluster: unknown cluster "nope"'],
    ],
    [
      'an empty routes array in a virtual host',
      ['[[listeners.virtual_hosts]]', 'domains = ["a.com"]', 'routes = []'],
      ['kmesh.toml:15: listeners[0].virtual_hosts[0].routes: is empty'],
    ],
  ];
  for (const [name, lines, expected] of cases) {
    test(name, () => assert.deepEqual(errorsOf(withRoutes(...lines)), expected));
  }

  test('routes on a tcp listener', () => {
    const tcp = toml(
      ...CLUSTERS,
      ...HTTP_LISTENER.filter((l) => !l.startsWith('protocol')),
      '[[listeners.routes]]',
      'cluster = "v1"',
    );
    assert.deepEqual(errorsOf(tcp), [
      'kmesh.toml:12: listeners[0].routes: HTTP routes need protocol "http", not "tcp"',
    ]);
  });

  test('more routes than a virtual host may hold', () => {
    const routes = Array.from({ length: L7_LIMITS.routesPerVirtualHost + 1 }, () => [
      '[[listeners.routes]]',
      'cluster = "v1"',
    ]);
    assert.deepEqual(errorsOf(withRoutes(...routes.flat())), [
      'kmesh.toml:13: listeners[0].routes: at most 16 routes per virtual host, got 17',
    ]);
    const atLimit = routes.slice(1).flat();
    assert.equal(parseConfig(withRoutes(...atLimit), PATH).model.listeners[0]?.virtualHosts?.[0]?.routes.length, 16);
  });

  test('more header names than the kernel captures for one listener', () => {
    const routes = Array.from({ length: L7_LIMITS.headerNamesPerListener + 1 }, (_, i) => [
      '[[listeners.routes]]',
      `match = { headers = [ { name = "x-${i}", present = true } ] }`,
      'cluster = "v1"',
    ]);
    assert.deepEqual(errorsOf(withRoutes(...routes.flat())), [
      'kmesh.toml:13: listeners[0].routes: the routes match on 9 different header names (x-0, x-1, x-2, x-3, x-4, x-5, x-6, x-7, x-8); at most 8 per listener',
    ]);
  });
});
