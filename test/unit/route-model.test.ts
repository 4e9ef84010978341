/** The HTTP route model: validation and kernel limits (by-name locator), and the reference matcher. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { L7_LIMITS } from '../../src/l7/limits.js';
import {
  chooseRoute,
  chooseVirtualHost,
  type RequestHead,
  routeConnection,
  routeMatches,
} from '../../src/model/route-match.js';
import { routesText } from '../../src/model/route-text.js';
import type { HeaderMatcher, HttpRoute, Listener, MeshModel, VirtualHost } from '../../src/model/types.js';
import { domainProblem, validateModel } from '../../src/model/validate.js';
import { cluster, ep, listener } from '../support/model-builders.js';

const route = (name: string, match: Partial<HttpRoute['match']>, ...clusters: Array<[string, number]>): HttpRoute => ({
  name,
  match: { headers: [], ...match },
  clusters: clusters.map(([c, weight]) => ({ cluster: c, weight })),
});
const vhost = (name: string, domains: string[], routes: HttpRoute[]): VirtualHost => ({ name, domains, routes });
const header = (name: string, matcher: HeaderMatcher['matcher'], invert = false): HeaderMatcher => ({
  name,
  matcher,
  invert,
});
const httpListener = (virtualHosts: VirtualHost[], protocol: Listener['protocol'] = 'http'): Listener => ({
  ...listener('web', '127.46.0.1', 80, [['v1', 1]], protocol),
  virtualHosts,
});
const model = (l: Listener): MeshModel => ({ clusters: [cluster('v1'), cluster('v2')], listeners: [l] });
const req = (method: string, path: string, ...headers: Array<[string, string]>): RequestHead => ({
  method,
  path,
  headers,
});

describe('route model validation', () => {
  test('a listener with virtual hosts, routes, header matches and a split is valid', () => {
    const l = httpListener([
      vhost(
        'api',
        ['api.example.com', 'api.example.com:8080', '*.api.example.com', 'api.*', '[::1]:80', '127.46.0.1'],
        [
          route(
            'canary',
            { path: { kind: 'prefix', value: '/v2' }, headers: [header('x-canary', { kind: 'exact', value: '1' })] },
            ['v2', 1],
          ),
          route('split', { path: { kind: 'separated_prefix', value: '/api' }, method: 'GET' }, ['v1', 90], ['v2', 10]),
          route('rest', {}, ['v1', 1]),
        ],
      ),
      vhost(
        'any',
        ['*'],
        [route('all', { headers: [header(':authority', { kind: 'suffix', value: '.local' }, true)] }, ['v1', 1])],
      ),
    ]);
    assert.deepEqual(validateModel(model(l)), []);
  });

  test('virtual hosts only on http listeners; an empty list is refused', () => {
    assert.deepEqual(validateModel(model(httpListener([vhost('a', ['*'], [route('r', {}, ['v1', 1])])], 'tcp'))), [
      'listener "web" virtual_hosts: HTTP routes need protocol "http", not "tcp"',
    ]);
    assert.deepEqual(validateModel(model(httpListener([]))), ['listener "web" virtual_hosts: is empty']);
  });

  test('domains: forms, case, wildcards, ports, uniqueness across virtual hosts', () => {
    for (const good of [
      '*',
      'a.b',
      '*.b.c',
      '*-b.c',
      'a.*',
      'a-*',
      'a.b:80',
      '*:8080',
      '[fd00::1]',
      '[::1]:443',
      '10.0.0.1',
    ]) {
      assert.equal(domainProblem(good), undefined, good);
    }
    const bad: Array<[string, RegExp]> = [
      ['A.com', /lower case/],
      ['a.*.com', /wildcard/],
      ['*.*', /wildcard/],
      ['**', /wildcard/],
      ['', /wildcard/],
      ['a.com:0', /port must be 1..65535/],
      ['a.com:99999', /port must be 1..65535/],
      ['a.com:x', /not a host name/],
      ['fd00::1', /written in brackets: "\[fd00::1\]"/],
      ['[zz]', /not an IPv6 address/],
      ['a b', /wildcard/],
      [`${'a'.repeat(L7_LIMITS.maxStringBytes)}.com`, /longer than 128 bytes/],
    ];
    for (const [domain, problem] of bad) assert.match(domainProblem(domain) ?? '', problem, domain);

    const l = httpListener([
      vhost('one', ['a.com', '*'], [route('r', {}, ['v1', 1])]),
      vhost('two', ['b.com', 'a.com', 'B.com'], [route('r', {}, ['v1', 1])]),
      vhost('', [], [route('r', {}, ['v1', 1])]),
    ]);
    assert.deepEqual(validateModel(model(l)), [
      'listener "web" virtual_hosts[1].domains[1]: "a.com" is already a domain of virtual_hosts[0]',
      'listener "web" virtual_hosts[1].domains[2]: must be lower case, got "B.com"',
      'listener "web" virtual_hosts[2].name: is empty',
      'listener "web" virtual_hosts[2].domains: names no domain',
    ]);
  });

  test('routes: path, method, header names and values, clusters and weights', () => {
    const l = httpListener([
      vhost(
        'v',
        ['*'],
        [
          route('p1', { path: { kind: 'prefix', value: 'v2' } }, ['v1', 1]),
          route('p2', { path: { kind: 'exact', value: '/a?b=1' } }, ['v1', 1]),
          route('p3', { path: { kind: 'separated_prefix', value: '/api/' } }, ['v1', 1]),
          route('m', { method: 'get' }, ['v1', 1]),
          route(
            'h',
            {
              headers: [
                header('X-Canary', { kind: 'exact', value: '1' }),
                header(':path', { kind: 'present' }),
                header('x-a', { kind: 'prefix', value: '' }),
                header('x-b', { kind: 'exact', value: 'a\r\nb' }),
              ],
            },
            ['v1', 1],
          ),
          route('c', {}, ['nope', 1]),
          route('w', {}, ['v1', 0], ['v2', 1_000_001]),
          route('', {}),
        ],
      ),
    ]);
    assert.deepEqual(validateModel(model(l)), [
      'listener "web" virtual_hosts[0].routes[0].match.path_prefix: must start with "/", got "v2"',
      'listener "web" virtual_hosts[0].routes[1].match.path: must not contain "?", "#", spaces or control characters',
      'listener "web" virtual_hosts[0].routes[2].match.path_separated_prefix: must not end with "/", got "/api/"',
      'listener "web" virtual_hosts[0].routes[3].match.method: not an upper-case HTTP method, got "get"',
      'listener "web" virtual_hosts[0].routes[4].match.headers[0].name: not a lower-case header name (or :method, :authority), got "X-Canary"',
      'listener "web" virtual_hosts[0].routes[4].match.headers[1].name: not a lower-case header name (or :method, :authority), got ":path"',
      'listener "web" virtual_hosts[0].routes[4].match.headers[2].prefix: is empty (a prefix of "" matches any value: use present)',
      'listener "web" virtual_hosts[0].routes[4].match.headers[3].exact: must not contain control characters',
      'listener "web" virtual_hosts[0].routes[5].cluster: unknown cluster "nope"',
      'listener "web" virtual_hosts[0].routes[6].weighted_clusters[0].weight: must be an integer 1..1000000, got 0',
      'listener "web" virtual_hosts[0].routes[6].weighted_clusters[1].weight: must be an integer 1..1000000, got 1000001',
      'listener "web" virtual_hosts[0].routes[7].name: is empty',
      'listener "web" virtual_hosts[0].routes[7].weighted_clusters: names no cluster',
    ]);
  });

  test('every per-listener limit is enforced at its boundary', () => {
    const n = (count: number) => Array.from({ length: count }, (_, i) => i);
    const max = L7_LIMITS.maxStringBytes;
    const names = n(L7_LIMITS.headerNamesPerListener).map((k) => `x-${k}${'h'.repeat(max - 3 - String(k).length)}`);
    const big = cluster(
      'big',
      n(L7_LIMITS.endpointsPerCluster).map((i) => ep('127.46.1.1', 1000 + i)),
    );
    const atLimit = httpListener([
      vhost(
        'vh',
        ['*'],
        n(L7_LIMITS.routesPerVirtualHost).map((j) =>
          route(
            `r${j}`,
            {
              path: { kind: 'prefix', value: `/${'p'.repeat(max - 1)}` },
              method: 'G'.repeat(max),
              headers: n(L7_LIMITS.headersPerRoute - 1).map((k) =>
                header(names[(j + k) % names.length] as string, { kind: 'exact', value: 'é'.repeat(max / 2) }),
              ),
            },
            ['big', 1],
          ),
        ),
      ),
    ]);
    const withBig = (l: Listener, endpoints = big.endpoints): MeshModel => ({
      clusters: [cluster('v1'), { ...big, endpoints }],
      listeners: [l],
    });
    assert.deepEqual(validateModel(withBig(atLimit)), []);

    const vh = atLimit.virtualHosts?.[0] as VirtualHost;
    const r0 = vh.routes[0] as HttpRoute;
    const over = httpListener([
      {
        ...vh,
        routes: [
          ...vh.routes,
          {
            ...r0,
            match: {
              path: { kind: 'exact', value: `/${'p'.repeat(max)}` },
              method: 'G'.repeat(max + 1),
              headers: [...r0.match.headers, header('x-new', { kind: 'suffix', value: 'é'.repeat(max / 2 + 1) })],
            },
          },
        ],
      },
    ]);
    assert.deepEqual(
      validateModel(withBig(over, [...big.endpoints, ep('127.46.1.2', 1)])).map((e) =>
        e.replace('listener "web" ', ''),
      ),
      [
        `virtual_hosts: the routes match on 9 different header names (${names.join(', ')}, x-new); at most 8 per listener`,
        'virtual_hosts[0].routes: at most 16 routes per virtual host, got 17',
        'virtual_hosts[0].routes[16].match.path: longer than 128 bytes (129)',
        'virtual_hosts[0].routes[16].match.method: longer than 128 bytes (129)',
        'virtual_hosts[0].routes[16].match.headers: at most 8 header matches per route (the method counts as one), got 9',
        'virtual_hosts[0].routes[16].match.headers[7].suffix: longer than 128 bytes (130)',
        ...n(17).map(
          (j) =>
            `virtual_hosts[0].routes[${j}].cluster: cluster "big" has 65 endpoints; HTTP routes send to clusters of at most 64`,
        ),
      ],
    );
  });

  test('kernel map sizes: listeners with routes, virtual hosts and domains in all', () => {
    const vh = (i: number, domains = 1) =>
      vhost(
        `vh${i}`,
        Array.from({ length: domains }, (_, j) => `h${i}-${j}.example`),
        [route('r', {}, ['v1', 1])],
      );
    const http = (i: number, vhosts: VirtualHost[]): Listener => ({
      ...listener(`l${i}`, `127.46.${i >> 8}.${i & 255}`, 80, [['v1', 1]], 'http'),
      virtualHosts: vhosts,
    });
    const errors = (listeners: Listener[]) => validateModel({ clusters: [cluster('v1')], listeners });
    const many = Array.from({ length: L7_LIMITS.listeners }, (_, i) => http(i, [vh(i)]));
    assert.deepEqual(errors(many), []);
    assert.deepEqual(errors([...many, http(L7_LIMITS.listeners, [vh(0)])]), [
      'listener "l1024" virtual_hosts: more than 1024 listeners with HTTP routes in all (kernel map size)',
    ]);
    const vhosts = Array.from({ length: L7_LIMITS.virtualHosts / 2 }, (_, i) => vh(i, 4));
    assert.deepEqual(errors([http(0, vhosts), http(1, vhosts)]), []);
    assert.deepEqual(errors([http(0, vhosts), http(1, [...vhosts, vh(9999)])]), [
      'listener "l1" virtual_hosts: more than 4096 virtual hosts in all (kernel map size)',
    ]);
    const fat = Array.from({ length: L7_LIMITS.virtualHosts / 2 }, (_, i) => vh(i, 5));
    assert.deepEqual(errors([http(0, fat), http(1, fat)]), [
      'listener "l1" virtual_hosts: more than 16384 virtual host domains in all (kernel map size)',
    ]);
  });
});

describe('reference route matching', () => {
  const routes = [
    route('canary', { headers: [header('x-canary', { kind: 'exact', value: '1' })] }, ['v2', 1]),
    route('v2-get', { path: { kind: 'prefix', value: '/v2' }, method: 'GET' }, ['v2', 1]),
    route('exact', { path: { kind: 'exact', value: '/login' } }, ['v2', 1]),
    route('api', { path: { kind: 'separated_prefix', value: '/api' } }, ['v2', 1]),
    route('no-user', { headers: [header('x-user', { kind: 'present' }, true)] }, ['v2', 1]),
    route('rest', {}, ['v1', 1]),
  ];
  const vhosts = [vhost('all', ['*'], routes)];
  const pick = (r: RequestHead) => chooseRoute(vhosts, r)?.route.name;
  const user: [string, string] = ['X-User', 'u'];

  test('first match wins; every present part must hold', () => {
    assert.equal(pick(req('GET', '/v2/x', ['x-canary', '1'], user)), 'canary');
    assert.equal(pick(req('GET', '/v2/x', ['X-Canary', ' 1 '], user)), 'canary', 'names any case, value trimmed');
    assert.equal(pick(req('GET', '/v2/x', ['x-canary', '11'], user)), 'v2-get');
    assert.equal(pick(req('POST', '/v2/x', user)), 'rest', 'method is part of the match');
    assert.equal(pick(req('get', '/v2/x', user)), 'rest', 'methods are case-sensitive');
    assert.equal(pick(req('GET', '/v2', user)), 'v2-get');
    assert.equal(pick(req('GET', '/v20', user)), 'v2-get', 'a plain prefix is not segment-aware');
    assert.equal(pick(req('GET', '/V2', user)), 'rest', 'paths are case-sensitive');
    assert.equal(pick(req('POST', '/login?next=/', user)), 'exact', 'the query is not part of the path');
    assert.equal(pick(req('POST', '/login/', user)), 'rest');
    assert.equal(pick(req('PUT', '/api', user)), 'api');
    assert.equal(pick(req('PUT', '/api/x', user)), 'api');
    assert.equal(pick(req('PUT', '/api?x', user)), 'api');
    assert.equal(pick(req('PUT', '/apix', user)), 'rest', 'separated prefix ends at "/", "?" or the end');
    assert.equal(pick(req('PUT', '/x')), 'no-user', 'inverted present = the header is absent');
  });

  test("a connection goes to the matching route's clusters, else to the listener's default", () => {
    const l = httpListener([
      vhost('a', ['a.com'], [route('v2', { path: { kind: 'prefix', value: '/v2' } }, ['v2', 1])]),
    ]);
    assert.deepEqual(routeConnection(l, req('GET', '/v2/x', ['Host', 'a.com'])), {
      route: l.virtualHosts?.[0]?.routes[0],
      clusters: [{ cluster: 'v2', weight: 1 }],
    });
    assert.deepEqual(routeConnection(l, req('GET', '/v1', ['Host', 'a.com'])), {
      clusters: [{ cluster: 'v1', weight: 1 }],
    });
    assert.deepEqual(routeConnection(l, req('GET', '/v2', ['Host', 'b.com'])), {
      clusters: [{ cluster: 'v1', weight: 1 }],
    });
    assert.deepEqual(routeConnection(l, undefined), { clusters: [{ cluster: 'v1', weight: 1 }] }, 'not HTTP/1.x');
  });

  test('header matchers; a missing header fails all but an inverted present (Envoy)', () => {
    const m = (h: HeaderMatcher, ...headers: Array<[string, string]>) =>
      routeMatches({ headers: [h] }, req('GET', '/', ...headers));
    const value = (matcher: HeaderMatcher['matcher'], invert = false) => header('x-v', matcher, invert);
    assert.ok(m(value({ kind: 'prefix', value: 'ab' }), ['x-v', 'abc']));
    assert.ok(!m(value({ kind: 'prefix', value: 'ab' }), ['x-v', 'xab']));
    assert.ok(m(value({ kind: 'suffix', value: 'bc' }), ['x-v', 'abc']));
    assert.ok(m(value({ kind: 'exact', value: '' }), ['x-v', '  ']), 'an empty value is present');
    assert.ok(m(value({ kind: 'present' }), ['x-v', '']));
    assert.ok(m(value({ kind: 'exact', value: 'a,b' }), ['x-v', 'a'], ['x-v', 'b']), 'repeated fields joined');
    assert.ok(m(value({ kind: 'exact', value: '1' }, true), ['x-v', '2']));
    assert.ok(!m(value({ kind: 'exact', value: '1' }, true)), 'a missing header does not match an inverted exact');
    assert.ok(!m(value({ kind: 'exact', value: '1' })));
    assert.ok(!m(value({ kind: 'present' })));
    assert.ok(m(value({ kind: 'present' }, true)));
    assert.ok(m(header(':method', { kind: 'prefix', value: 'GE' })));
    assert.ok(m(header(':authority', { kind: 'exact', value: 'a.com:80' }), ['Host', 'a.com:80']));
  });

  test('virtual host by Host: exact, longest suffix, longest prefix, *; ports; case', () => {
    const vh = (name: string, ...domains: string[]) => vhost(name, domains, [route('r', {}, ['v1', 1])]);
    const hosts = [
      vh('any', '*'),
      vh('exact', 'a.example.com'),
      vh('exact-port', 'a.example.com:8080'),
      vh('suffix', '*.example.com'),
      vh('longer-suffix', '*.b.example.com'),
      vh('prefix', 'a.*'),
      vh('longer-prefix', 'a.example.*'),
      vh('v6', '[::1]:80'),
    ];
    const name = (host: string) => chooseVirtualHost(hosts, host)?.name;
    assert.equal(name('a.example.com'), 'exact');
    assert.equal(name('A.Example.COM:9'), 'exact', 'case-insensitive; a domain without port takes any port');
    assert.equal(name('a.example.com:8080'), 'exact-port', 'the domain naming the port wins');
    assert.equal(name('x.b.example.com'), 'longer-suffix');
    assert.equal(name('x.example.com'), 'suffix');
    assert.equal(name('.example.com'), 'any', 'a wildcard stands for at least one character');
    assert.equal(name('a.example.org'), 'longer-prefix');
    assert.equal(name('a.org'), 'prefix');
    assert.equal(name('[::1]:80'), 'v6');
    assert.equal(name('[::1]:81'), 'any');
    assert.equal(name(''), 'any');
    assert.equal(chooseVirtualHost([vh('only', 'a.com:80')], 'a.com'), undefined, 'a port domain needs that port');
    assert.equal(chooseRoute([vh('only', 'a.com')], req('GET', '/', ['host', 'b.com'])), undefined);
    assert.equal(chooseRoute([vh('only', 'a.com')], req('GET', '/', ['host', 'a.com']))?.vhost.name, 'only');
  });
});

describe('route text for kmeshctl dump', () => {
  test('one line per route in match order, the default, and the unenforced list', () => {
    const l: Listener = {
      ...httpListener([
        vhost(
          'api',
          ['api.example.com', '*.api.example.com'],
          [
            route(
              'canary',
              {
                method: 'GET',
                path: { kind: 'prefix', value: '/v2' },
                headers: [header('x-canary', { kind: 'exact', value: '1' })],
              },
              ['v2', 1],
            ),
            route(
              'no-user',
              {
                headers: [
                  header('x-user', { kind: 'present' }, true),
                  header('x-a', { kind: 'suffix', value: 'b' }, true),
                ],
              },
              ['v2', 1],
            ),
            route('split', { path: { kind: 'separated_prefix', value: '/api' } }, ['v1', 2], ['v2', 1]),
            route('rest', {}, ['v1', 1]),
          ],
        ),
      ]),
      unenforcedRoutes: [{ description: 'route x: not programmed (regex path match)', detail: {} }],
    };
    const tcp = listener('plain', '127.46.0.2', 80, [['v1', 1]]);
    assert.deepEqual(routesText({ clusters: [], listeners: [l, tcp] }), {
      web: {
        routes: [
          '[api.example.com *.api.example.com] canary: method GET and path_prefix /v2 and header x-canary exact "1" -> v2',
          '[api.example.com *.api.example.com] no-user: header x-user absent and header x-a not suffix "b" -> v2',
          '[api.example.com *.api.example.com] split: path_separated_prefix /api -> v1 66.7%, v2 33.3%',
          '[api.example.com *.api.example.com] rest: any request -> v1',
        ],
        default: 'v1',
        unenforced: ['route x: not programmed (regex path match)'],
      },
    });
  });
});
