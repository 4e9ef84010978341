/**
 * HTTP routes of a `[[listeners]]` entry: `[[listeners.routes]]` (one virtual host for every domain) or
 * `[[listeners.virtual_hosts]]` with their own `[[listeners.virtual_hosts.routes]]`. Reads the shape; the rules
 * (forms, limits, known clusters) are the model's (validateModel), located back here by `where`.
 */
import type {
  HeaderMatcher,
  HttpRoute,
  PathMatcher,
  RouteHashPolicy,
  RouteMatch,
  VirtualHost,
  WeightedCluster,
} from '../../model/types.js';
import { PATH_KEYS, WEIGHT_RANGE } from '../../model/validate.js';
import { show, type TableReader } from './table-reader.js';

/** Locates a key inside nested arrays of tables of one listener: [["virtual_hosts", 0], ["routes", 2]]. */
export type NestedWhere = (path: Array<[name: string, index: number]>, key?: string) => string;

export interface ListenerRoutes {
  /** Undefined when the listener has no routes (connect-time steering, as for tcp). */
  virtualHosts?: VirtualHost[];
  /** A model key under `virtual_hosts` → where the file says it; undefined for other keys. */
  where(modelKey: string): string | undefined;
}

/** The listener's or route's `cluster` / `weighted_clusters` (exactly one). */
export function readClusterChoice(t: TableReader): WeightedCluster[] {
  const cluster = t.optionalString('cluster');
  const weighted = t.tables(
    'weighted_clusters',
    (w): WeightedCluster => ({
      cluster: w.string('cluster') ?? '',
      weight: w.modelInteger('weight', WEIGHT_RANGE) ?? 0,
    }),
  );
  if ((cluster === undefined) === (weighted === undefined)) {
    t.fail(undefined, 'needs exactly one of cluster = "name" or weighted_clusters = [...]');
  }
  return cluster !== undefined ? [{ cluster, weight: 1 }] : (weighted ?? []);
}

/** The model names a one-cluster choice `cluster`, a split `weighted_clusters[i]`; the file says what was written. */
export function choiceKey(t: TableReader, key: string): string {
  return t.has('weighted_clusters')
    ? key.replace(/^cluster(?=$|\.)/, 'weighted_clusters[0]')
    : key.replace(/^weighted_clusters(\[\d+\])?/, 'cluster');
}

export function readListenerRoutes(t: TableReader, nested: NestedWhere): ListenerRoutes {
  // Route readers by [vhost][route], to say keys as written; `viaVhosts` tells which shape was used.
  const readers: TableReader[][] = [];
  const routesOf = (vhost: number) => (r: TableReader, j: number) => {
    const list = readers[vhost] ?? [];
    readers[vhost] = list;
    list[j] = r;
    return readRoute(r, j);
  };
  const itemWhere = (path: Array<[string, number]>, name: string) => (j: number) => (key?: string) =>
    nested([...path, [name, j]], key);

  const shorthand = t.tables('routes', routesOf(0), itemWhere([], 'routes'));
  const vhosts = t.tables(
    'virtual_hosts',
    (v, k) => readVirtualHost(v, (r) => r.tables('routes', routesOf(k), itemWhere([['virtual_hosts', k]], 'routes'))),
    itemWhere([], 'virtual_hosts'),
  );
  if (shorthand && vhosts) t.fail('virtual_hosts', 'use either routes (for every domain) or virtual_hosts, not both');
  const viaVhosts = vhosts !== undefined;

  const where = (modelKey: string): string | undefined => {
    const m = /^virtual_hosts(?:\[(\d+)\](?:\.routes(?:\[(\d+)\](?:\.(.*))?)?|\.(.*))?)?$/.exec(modelKey);
    if (!m) return undefined;
    const [, vh, route, routeKey, vhostKey] = m;
    const own = viaVhosts ? 'virtual_hosts' : 'routes';
    const vhostPath: Array<[string, number]> = viaVhosts && vh !== undefined ? [['virtual_hosts', Number(vh)]] : [];
    if (route !== undefined) {
      const reader = readers[Number(vh)]?.[Number(route)];
      const key = routeKey !== undefined && reader ? choiceKey(reader, routeKey) : routeKey;
      return nested([...vhostPath, ['routes', Number(route)]], key);
    }
    if (vhostKey !== undefined && viaVhosts) return nested(vhostPath, vhostKey);
    if (modelKey.endsWith('.routes') && viaVhosts) return nested(vhostPath, 'routes');
    return t.where(own);
  };
  const virtualHosts = vhosts ?? (shorthand ? [{ name: '*', domains: ['*'], routes: shorthand }] : undefined);
  return virtualHosts ? { virtualHosts, where } : { where };
}

function readVirtualHost(v: TableReader, routes: (v: TableReader) => HttpRoute[] | undefined): VirtualHost {
  const domains = readDomains(v);
  return {
    name: v.optionalString('name') ?? domains[0] ?? '',
    domains,
    routes: routes(v) ?? required(v, 'routes'),
  };
}

/** Host names compare case-insensitively: written in any case, kept in lower case. */
function readDomains(v: TableReader): string[] {
  const raw = v.raw('domains');
  if (raw === undefined) return required(v, 'domains');
  if (!Array.isArray(raw) || raw.some((d) => typeof d !== 'string')) {
    v.fail('domains', `must be an array of strings, got ${show(raw)}`);
    return [];
  }
  return raw.map((d: string) => d.toLowerCase());
}

function required(t: TableReader, key: string): never[] {
  t.fail(key, 'is required');
  return [];
}

function readRoute(r: TableReader, index: number): HttpRoute {
  const route: HttpRoute = {
    name: r.optionalString('name') ?? `routes[${index}]`,
    // No match: every request.
    match: r.subTable('match', readMatch) ?? { headers: [] },
    clusters: readClusterChoice(r),
  };
  const hashPolicy = r.subTable('hash_key', readHashKey);
  if (hashPolicy) route.hashPolicy = hashPolicy;
  return route;
}

/** `hash_key = { header = "x-user" }` or `{ cookie = "session" }`: the maglev / ring_hash key of the route. */
function readHashKey(h: TableReader): RouteHashPolicy | undefined {
  const found = (['header', 'cookie'] as const).flatMap((kind) => {
    const name = h.optionalString(kind);
    // header names compare case-insensitively, cookie names do not
    return name === undefined ? [] : [{ kind, name: kind === 'header' ? name.toLowerCase() : name }];
  });
  if (found.length !== 1) h.fail(undefined, 'needs exactly one of header = "name" or cookie = "name"');
  return found.length === 1 ? found[0] : undefined;
}

function readMatch(m: TableReader): RouteMatch {
  const match: RouteMatch = { headers: m.tables('headers', readHeader) ?? [] };
  const paths = (Object.entries(PATH_KEYS) as Array<[PathMatcher['kind'], string]>).flatMap(([kind, key]) => {
    const value = m.optionalString(key);
    return value === undefined ? [] : [{ kind, value }];
  });
  if (paths.length > 1) m.fail(undefined, `at most one of ${Object.values(PATH_KEYS).join(', ')}`);
  if (paths[0]) match.path = paths[0];
  const method = m.optionalString('method');
  if (method !== undefined) match.method = method;
  return match;
}

const VALUE_KINDS = ['exact', 'prefix', 'suffix'] as const;
const ONE_KIND = 'needs exactly one of exact, prefix, suffix = "value", present = true or absent = true';

/** `{ name, exact | prefix | suffix | present = true | absent = true, invert = false }`; absent = inverted present. */
function readHeader(h: TableReader): HeaderMatcher {
  const name = (h.string('name') ?? '').toLowerCase();
  const invert = h.boolean('invert', false);
  const kinds: HeaderMatcher[] = [];
  for (const kind of VALUE_KINDS) {
    const value = h.raw(kind);
    if (value === undefined) continue;
    // An empty exact value is a real match (the header is sent empty); validation refuses empty prefix/suffix.
    if (typeof value !== 'string') h.fail(kind, `must be a string, got ${show(value)}`);
    else kinds.push({ name, matcher: { kind, value }, invert });
  }
  for (const flag of ['present', 'absent'] as const) {
    if (!h.has(flag)) continue;
    if (h.boolean(flag, true) !== true)
      h.fail(flag, `must be true (write ${flag === 'present' ? 'absent' : 'present'} = true for the opposite)`);
    else if (flag === 'absent' && invert) h.fail('invert', 'absent = true is not inverted: write present = true');
    else kinds.push({ name, matcher: { kind: 'present' }, invert: flag === 'absent' });
  }
  if ([...VALUE_KINDS, 'present', 'absent'].filter((k) => h.has(k)).length !== 1) h.fail(undefined, ONE_KIND);
  return kinds[0] ?? { name, matcher: { kind: 'present' }, invert };
}
