/**
 * RDS → HTTP routes, with resources shaped as istiod sends them for VirtualServices: header canary, path prefixes,
 * methods, per-route splits, its default retry policy and zero timeout; what the kernel cannot do is listed as
 * unenforced; an over-limit route table is refused naming the resource.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptyState, type XdsState } from '../../src/api/xds/convert.js';
import { decodeCluster, decodeListener, decodeLoadAssignment, decodeRouteConfig } from '../../src/api/xds/decode.js';
import { convert } from '../../src/api/xds/model-builder.js';
import { TYPE, xdsTypes } from '../../src/api/xds/protos.js';
import { XdsResourceError } from '../../src/api/xds/resources.js';
import { L7_LIMITS } from '../../src/model/l7-limits.js';
import { chooseRoute } from '../../src/model/route-match.js';
import type { Listener } from '../../src/model/types.js';
import { cluster, httpListener, loadAssignment, type Res, routeAction, routeConfig } from '../fixtures/xds-server.js';

const VIP = '127.46.0.9';
const CLUSTERS = ['outbound|9080|v1|reviews', 'outbound|9080|v2|reviews', 'outbound|9080|v3|reviews'];
const [V1, V2, V3] = CLUSTERS as [string, string, string];

/** What istiod puts on every route of a VirtualService besides match and destination. */
const ISTIO_DEFAULTS = {
  timeout: {},
  retryPolicy: {},
};
const istioRoute = (name: string, match: Record<string, unknown>, dest: Parameters<typeof routeAction>[0]) => ({
  name,
  match,
  route: { ...routeAction(dest), ...ISTIO_DEFAULTS },
});
const vhostDomains = ['reviews.default.svc.cluster.local', 'reviews', 'reviews.default', VIP, `${VIP}:9080`];

function listenerFor(routes: Array<Record<string, unknown>>, ready = CLUSTERS): Listener | undefined {
  const s = stateWith(
    routeConfig('9080', [{ name: 'reviews.default.svc.cluster.local:9080', domains: vhostDomains, routes }]),
    ready,
  );
  return convert(s, new Map()).model.listeners[0];
}

function stateWith(rds: Res, ready: string[]): XdsState {
  const s = emptyState();
  CLUSTERS.forEach((name, i) => {
    s.clusters.set(name, decodeCluster(cluster({ name }).value, i));
    const eps = ready.includes(name) ? [{ address: '127.46.0.20', port: 36000 + i }] : [];
    s.assignments.set(name, decodeLoadAssignment(loadAssignment(name, eps).value, i));
  });
  s.listeners.set('0.0.0.0_9080', decodeListener(httpListener(9080).value, 0));
  s.routes.set(rds.name, decodeRouteConfig(rds.value, 0));
  return s;
}

/** Decoding one RouteConfiguration built from a protobufjs object. */
function decodeRoutes(routes: Array<Record<string, unknown>>) {
  return decodeRouteConfig(routeConfig('9080', [{ name: 'vh', domains: [VIP], routes }]).value, 0);
}

const catchAll = (dest: Parameters<typeof routeAction>[0]) => istioRoute('default', { prefix: '/' }, dest);
const head = (method: string, path: string, ...headers: Array<[string, string]>) => ({ method, path, headers });

describe('xDS HTTP routes from istiod', () => {
  it("header canary, path prefix, method, and a 90/10 default split become the VIP listener's routes", () => {
    const l = listenerFor([
      istioRoute('canary', { prefix: '/', headers: [{ name: 'end-user', stringMatch: { exact: 'jason' } }] }, V2),
      istioRoute('v3-api', { pathSeparatedPrefix: '/api/v3', headers: [{ name: ':method', exactMatch: 'GET' }] }, V3),
      istioRoute(
        'not-bot',
        { prefix: '/static', headers: [{ name: 'user-agent', stringMatch: { prefix: 'bot' }, invertMatch: true }] },
        V3,
      ),
      catchAll([
        { cluster: V1, weight: 90 },
        { cluster: V2, weight: 10 },
      ]),
    ]);
    assert.equal(l?.name, `${VIP}_9080`);
    assert.equal(l?.protocol, 'http');
    assert.deepEqual(
      l?.routes,
      [
        { cluster: V1, weight: 90 },
        { cluster: V2, weight: 10 },
      ],
      'the catch-all stays the connect-time default (non-HTTP connections)',
    );
    const vh = l?.virtualHosts?.[0];
    assert.deepEqual(vh?.domains, ['*'], 'the VIP chose the virtual host');
    assert.deepEqual(
      vh?.routes.map((r) => [r.name, r.match, r.clusters]),
      [
        [
          'canary',
          { headers: [{ name: 'end-user', matcher: { kind: 'exact', value: 'jason' }, invert: false }] },
          [{ cluster: V2, weight: 1 }],
        ],
        [
          'v3-api',
          { headers: [], path: { kind: 'separated_prefix', value: '/api/v3' }, method: 'GET' },
          [{ cluster: V3, weight: 1 }],
        ],
        [
          'not-bot',
          {
            headers: [{ name: 'user-agent', matcher: { kind: 'prefix', value: 'bot' }, invert: true }],
            path: { kind: 'prefix', value: '/static' },
          },
          [{ cluster: V3, weight: 1 }],
        ],
        [
          'default',
          { headers: [] },
          [
            { cluster: V1, weight: 90 },
            { cluster: V2, weight: 10 },
          ],
        ],
      ],
    );
    // What the routes mean, by the reference matcher.
    const vhosts = l?.virtualHosts ?? [];
    const pick = (...args: Parameters<typeof head>) => chooseRoute(vhosts, head(...args))?.route.name;
    assert.equal(pick('GET', '/', ['end-user', 'jason']), 'canary');
    assert.equal(pick('GET', '/api/v3/x'), 'v3-api');
    assert.equal(pick('POST', '/api/v3/x'), 'default');
    assert.equal(pick('GET', '/static/a', ['user-agent', 'curl']), 'not-bot');
    assert.equal(pick('GET', '/static/a', ['user-agent', 'bot/1']), 'default');
    assert.equal(pick('GET', '/static/a'), 'default', 'an inverted prefix needs the header');
    // istiod's default retry policy is listed per programmed route; its zero timeout is no timeout.
    assert.deepEqual(
      l?.unenforcedRoutes?.map((u) => u.description),
      ['canary', 'v3-api', 'not-bot', 'default'].map(
        (r) =>
          `route configuration 9080 vhost reviews.default.svc.cluster.local:9080 route ${r}: programmed; not enforced: retries`,
      ),
    );
  });

  it('present_match false = absent; no specifier = present; :authority kept; legacy prefix/suffix fields', () => {
    const rc = decodeRoutes([
      istioRoute(
        'r',
        {
          prefix: '/',
          headers: [
            { name: 'x-a', presentMatch: false },
            { name: 'x-b', presentMatch: true, invertMatch: true },
            { name: 'x-c' },
            { name: ':authority', suffixMatch: '.local' },
          ],
        },
        V2,
      ),
      catchAll(V1),
    ]);
    assert.deepEqual(rc.vhosts[0]?.http?.routes[0]?.match.headers, [
      { name: 'x-a', matcher: { kind: 'present' }, invert: true },
      { name: 'x-b', matcher: { kind: 'present' }, invert: true },
      { name: 'x-c', matcher: { kind: 'present' }, invert: false },
      { name: ':authority', matcher: { kind: 'suffix', value: '.local' }, invert: false },
    ]);
    const legacy = decodeRoutes([
      istioRoute('r', { prefix: '/', headers: [{ name: 'x-d', prefixMatch: 'p' }] }, V2),
      catchAll(V1),
    ]);
    assert.deepEqual(legacy.vhosts[0]?.http?.routes[0]?.match.headers, [
      { name: 'x-d', matcher: { kind: 'prefix', value: 'p' }, invert: false },
    ]);
  });

  it('what the kernel cannot match or do is not programmed, and listed with the reason', () => {
    const rc = decodeRoutes([
      istioRoute('regex', { safeRegex: { regex: '/v[0-9]+' } }, V2),
      istioRoute('query', { prefix: '/', queryParameters: [{ name: 'debug', presentMatch: true }] }, V2),
      istioRoute('header-regex', { prefix: '/', headers: [{ name: 'x', safeRegexMatch: { regex: 'a.*' } }] }, V2),
      istioRoute(
        'ignore-case',
        { prefix: '/', headers: [{ name: 'x', stringMatch: { exact: 'a', ignoreCase: true } }] },
        V2,
      ),
      istioRoute('contains', { prefix: '/', headers: [{ name: 'x', stringMatch: { contains: 'a' } }] }, V2),
      istioRoute('path-header', { prefix: '/', headers: [{ name: ':path', prefixMatch: '/x' }] }, V2),
      istioRoute('case', { prefix: '/A', caseSensitive: { value: false } }, V2),
      { name: 'redirect', match: { prefix: '/old' }, redirect: { pathRedirect: '/new' } },
      { name: 'direct', match: { prefix: '/health' }, directResponse: { status: 200 } },
      { name: 'by-header', match: { prefix: '/h' }, route: { clusterHeader: 'x-cluster' } },
      {
        name: 'rewrite',
        match: { prefix: '/v2' },
        route: {
          cluster: V2,
          prefixRewrite: '/',
          timeout: { seconds: 5 },
          requestMirrorPolicies: [{}],
          hashPolicy: [{}],
        },
        requestHeadersToAdd: [{}],
        typedPerFilterConfig: {
          'envoy.filters.http.fault': { typeUrl: 'type.googleapis.com/x', value: new Uint8Array() },
        },
      },
      catchAll(V1),
    ]);
    const vh = rc.vhosts[0];
    assert.deepEqual(
      vh?.http?.routes.map((r) => r.name),
      ['rewrite', 'default'],
    );
    assert.deepEqual(vh?.l4, [{ cluster: V1, weight: 1 }]);
    const prefix = 'route configuration 9080 vhost vh route ';
    assert.deepEqual(
      vh?.unenforced.map((u) => u.description.replace(prefix, '')),
      [
        'regex: not programmed (regex path match)',
        'query: not programmed (query parameter match)',
        'header-regex: not programmed (header x: regex match)',
        'ignore-case: not programmed (header x: case-insensitive match)',
        'contains: not programmed (header x: contains match)',
        'path-header: not programmed (header match on :path)',
        'case: not programmed (case-insensitive path match)',
        'redirect: not programmed (redirect)',
        'direct: not programmed (direct response)',
        'by-header: not programmed (cluster from a request header)',
        'rewrite: programmed; not enforced: path rewrite, timeout, mirroring, hash policy (empty), request header changes, filter envoy.filters.http.fault',
        'default: programmed; not enforced: retries',
      ],
    );
    assert.deepEqual((vh?.unenforced[0]?.detail as { match?: unknown } | undefined)?.match, {
      safeRegex: { regex: '/v[0-9]+' },
    });
  });

  it('a virtual host whose routes all lead to one place stays L4; its extras are still listed', () => {
    const rc = decodeRoutes([istioRoute('a', { prefix: '/a' }, V1), catchAll(V1)]);
    assert.equal(rc.vhosts[0]?.http, undefined);
    assert.deepEqual(rc.vhosts[0]?.l4, [{ cluster: V1, weight: 1 }]);
    assert.equal(rc.vhosts[0]?.unenforced.length, 2);
    const onlyRegexDiffers = decodeRoutes([istioRoute('re', { safeRegex: { regex: '.*' } }, V2), catchAll(V1)]);
    assert.equal(onlyRegexDiffers.vhosts[0]?.http, undefined, 'what is programmable is one destination');
    assert.match(
      onlyRegexDiffers.vhosts[0]?.unenforced[0]?.description ?? '',
      /re: not programmed \(regex path match\)/,
    );
  });

  it('vhost-level retries and header changes are listed once for the virtual host', () => {
    const t = xdsTypes().root.lookupType('envoy.config.route.v3.RouteConfiguration');
    const obj = {
      name: '9080',
      virtualHosts: [
        { name: 'vh', domains: [VIP], routes: [catchAll(V1)], retryPolicy: {}, responseHeadersToRemove: ['x'] },
      ],
    };
    const rc = decodeRouteConfig(t.encode(t.fromObject(obj)).finish(), 0);
    assert.equal(
      rc.vhosts[0]?.unenforced[0]?.description,
      'route configuration 9080 vhost vh: not enforced: retries, response header changes',
    );
    assert.deepEqual(rc.vhosts[0]?.unenforced[0]?.detail, {
      name: 'vh',
      domains: [VIP],
      responseHeadersToRemove: ['x'],
      retryPolicy: {},
    });
  });

  it('a route to a cluster without endpoints holds the listener back (warming)', () => {
    const routes = [istioRoute('canary', { prefix: '/', headers: [{ name: 'x', exactMatch: '1' }] }, V3), catchAll(V1)];
    const s = stateWith(routeConfig('9080', [{ name: 'vh', domains: [VIP], routes }]), [V1]);
    const c = convert(s, new Map());
    assert.deepEqual(c.model.listeners, []);
    assert.deepEqual(c.warming, [`${VIP}_9080`]);
  });

  it('unchanged RDS bytes give the same route objects on every conversion', () => {
    const s = stateWith(
      routeConfig('9080', [
        { name: 'vh', domains: [VIP], routes: [istioRoute('a', { path: '/a' }, V2), catchAll(V1)] },
      ]),
      CLUSTERS,
    );
    const a = convert(s, new Map()).model.listeners[0]?.virtualHosts?.[0];
    const b = convert(s, new Map()).model.listeners[0]?.virtualHosts?.[0];
    assert.ok(a && a === b);
  });

  describe('over the kernel limits: the route configuration is refused, naming it', () => {
    const refused = (routes: Array<Record<string, unknown>>, problem: RegExp) =>
      assert.throws(
        () => decodeRoutes(routes),
        (e: unknown) =>
          e instanceof XdsResourceError &&
          /^route configuration 9080 vhost vh: /.test(e.message) &&
          problem.test(e.message),
      );

    it(`more than ${L7_LIMITS.routesPerVirtualHost} routes`, () => {
      const many = Array.from({ length: L7_LIMITS.routesPerVirtualHost }, (_, i) =>
        istioRoute(`r${i}`, { path: `/${i}` }, V2),
      );
      refused([...many, catchAll(V1)], /routes: at most 16 routes per virtual host, got 17/);
      assert.equal(decodeRoutes([...many.slice(1), catchAll(V1)]).vhosts[0]?.http?.routes.length, 16);
    });

    it(`more than ${L7_LIMITS.headersPerRoute} header matches (the method counts as one)`, () => {
      const headers = [
        { name: ':method', exactMatch: 'GET' },
        ...Array.from({ length: L7_LIMITS.headersPerRoute }, () => ({ name: 'x', presentMatch: true })),
      ];
      refused(
        [istioRoute('h', { prefix: '/', headers }, V2), catchAll(V1)],
        /vhost vh: route h: match.headers: at most 8 header matches per route \(the method counts as one\), got 9$/,
      );
    });

    it(`more than ${L7_LIMITS.headerNamesPerListener} header names across the routes`, () => {
      const routes = Array.from({ length: L7_LIMITS.headerNamesPerListener + 1 }, (_, i) =>
        istioRoute(`h${i}`, { prefix: '/', headers: [{ name: `x-${i}`, presentMatch: true }] }, V2),
      );
      refused(
        [...routes, catchAll(V1)],
        /vhost vh: the routes match on 9 different header names \(x-0, .*, x-8\); at most 8/,
      );
    });

    it('a header value longer than the match string limit', () => {
      const value = 'v'.repeat(L7_LIMITS.maxStringBytes + 1);
      refused(
        [istioRoute('h', { prefix: '/', headers: [{ name: 'x', exactMatch: value }] }, V2), catchAll(V1)],
        /route h: match.headers\[0\].exact: longer than 128 bytes \(129\)/,
      );
    });

    it('a path with a query or a header value with CR/LF', () => {
      refused([istioRoute('q', { path: '/a?b' }, V2), catchAll(V1)], /route q: match.path: must not contain "\?"/);
      refused(
        [istioRoute('crlf', { prefix: '/', headers: [{ name: 'x', exactMatch: 'a\r\nb' }] }, V2), catchAll(V1)],
        /route crlf: match.headers\[0\].exact: must not contain control characters/,
      );
    });

    it('several problems in one message', () => {
      refused(
        [
          istioRoute('m', { prefix: '/', headers: [{ name: ':method', exactMatch: 'get' }] }, V2),
          istioRoute('p', { prefix: 'x' }, V2),
          catchAll(V1),
        ],
        /route m: match.method: not an upper-case HTTP method, got "get"; route p: match.path_prefix: must start with "\/"/,
      );
    });
  });
});

describe('xDS route protos', () => {
  it('HeaderMatcher and StringMatcher oneofs decode as istiod encodes them', () => {
    const t = xdsTypes().root.lookupType('envoy.config.route.v3.HeaderMatcher');
    const bytes = t.encode(t.fromObject({ name: 'x', stringMatch: { suffix: 's' }, invertMatch: true })).finish();
    // biome-ignore lint/suspicious/noExplicitAny: decoded protobuf message
    const m: any = t.decode(bytes);
    assert.equal(m.headerMatchSpecifier, 'stringMatch');
    assert.equal(m.stringMatch.matchPattern, 'suffix');
    assert.equal(TYPE.route, 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration');
  });
});
