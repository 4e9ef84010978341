/**
 * Envoy route → the kernel's HTTP route model: the match (path, method, headers) when the kernel can evaluate it
 * exactly, else why not; and the features of a route or virtual host it does not enforce (rewrites, retries,
 * mirrors, faults, header changes), which are listed in `unenforcedRoutes` rather than dropped silently.
 */
import type { HeaderMatcher, PathMatcher, RouteHashPolicy, RouteMatch, StringMatcher } from '../../model/types.js';

// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf messages are dynamic
type M = any;

/** A RouteMatch the kernel evaluates exactly as Envoy would, or the reason it cannot. */
export function routeMatch(match: M): RouteMatch | string {
  if (!match) return { headers: [] };
  const unsupported = unsupportedMatch(match);
  if (unsupported) return unsupported;
  const out: RouteMatch = { headers: [] };
  const path = pathMatcher(match);
  if (typeof path === 'string') return path;
  if (path) out.path = path;
  for (const h of match.headers ?? []) {
    const header = headerMatcher(h);
    if (typeof header === 'string') return header;
    // `:method` is the request line's method: an exact, non-inverted one becomes the route's method.
    if (header.name === ':method' && header.matcher.kind === 'exact' && !header.invert && out.method === undefined) {
      out.method = header.matcher.value;
    } else out.headers.push(header);
  }
  return out;
}

/** Match conditions with no kernel equivalent. */
function unsupportedMatch(match: M): string | undefined {
  if (match.safeRegex) return 'regex path match';
  if (match.connectMatcher) return 'CONNECT match';
  if (match.pathMatchPolicy) return 'path template match';
  if (match.caseSensitive && match.caseSensitive.value === false) return 'case-insensitive path match';
  if ((match.queryParameters ?? []).length > 0) return 'query parameter match';
  if (match.grpc) return 'gRPC match';
  if (match.runtimeFraction) return 'runtime fraction match';
  if (match.tlsContext) return 'TLS context match';
  if ((match.dynamicMetadata ?? []).length > 0 || (match.filterState ?? []).length > 0) return 'metadata match';
  return undefined;
}

/** Every origin-form path starts with "/", so prefix "" and "/" are no condition at all. */
function pathMatcher(match: M): PathMatcher | undefined | string {
  switch (match.pathSpecifier) {
    case 'path':
      return { kind: 'exact', value: match.path };
    case 'pathSeparatedPrefix':
      return { kind: 'separated_prefix', value: match.pathSeparatedPrefix };
    case 'prefix':
      return match.prefix === '' || match.prefix === '/' ? undefined : { kind: 'prefix', value: match.prefix };
    default:
      return undefined;
  }
}

/** Pseudo-headers the kernel reads from the request head; any other one (`:path`, `:scheme`) it does not. */
const KNOWN_PSEUDO = [':method', ':authority'];

function headerMatcher(h: M): HeaderMatcher | string {
  const name = String(h.name ?? '').toLowerCase();
  if (name.startsWith(':') && !KNOWN_PSEUDO.includes(name)) return `header match on ${name}`;
  if (h.treatMissingHeaderAsEmpty) return `header ${name}: treat_missing_header_as_empty`;
  const invert = Boolean(h.invertMatch);
  let matcher: StringMatcher | string;
  switch (h.headerMatchSpecifier) {
    case undefined: // Envoy: no specifier = present
      matcher = { kind: 'present' };
      break;
    case 'presentMatch':
      // present_match false = the header must be absent.
      return { name, matcher: { kind: 'present' }, invert: h.presentMatch ? invert : !invert };
    case 'exactMatch':
      matcher = { kind: 'exact', value: h.exactMatch };
      break;
    case 'prefixMatch':
      matcher = { kind: 'prefix', value: h.prefixMatch };
      break;
    case 'suffixMatch':
      matcher = { kind: 'suffix', value: h.suffixMatch };
      break;
    case 'stringMatch':
      matcher = stringMatcher(h.stringMatch);
      break;
    default:
      matcher = `${SPECIFIER_NAMES[h.headerMatchSpecifier] ?? h.headerMatchSpecifier} match`;
  }
  return typeof matcher === 'string' ? `header ${name}: ${matcher}` : { name, matcher, invert };
}

const SPECIFIER_NAMES: Record<string, string> = {
  safeRegexMatch: 'regex',
  rangeMatch: 'range',
  containsMatch: 'contains',
};

function stringMatcher(s: M): StringMatcher | string {
  if (s.ignoreCase) return 'case-insensitive match';
  switch (s.matchPattern) {
    case 'exact':
      return { kind: 'exact', value: s.exact };
    case 'prefix':
      return { kind: 'prefix', value: s.prefix };
    case 'suffix':
      return { kind: 'suffix', value: s.suffix };
    case 'safeRegex':
      return 'regex match';
    default:
      return `${s.matchPattern ?? 'empty'} match`;
  }
}

/** What a route (or virtual host) asks of the proxy that the kernel does not do; empty when nothing. */
export function unenforcedFeatures(r: M, action?: M): string[] {
  const out: string[] = [];
  const has = (list: unknown) => Array.isArray(list) && list.length > 0;
  if (action) {
    if (action.prefixRewrite || action.regexRewrite || action.pathRewritePolicy) out.push('path rewrite');
    if (
      action.hostRewriteLiteral ||
      action.autoHostRewrite?.value ||
      action.hostRewriteHeader ||
      action.hostRewritePathRegex
    )
      out.push('host rewrite');
    if (nonZero(action.timeout)) out.push('timeout');
    if (nonZero(action.idleTimeout)) out.push('idle timeout');
    if (action.retryPolicy) out.push('retries');
    if (has(action.requestMirrorPolicies)) out.push('mirroring');
    out.push(...routeHashPolicy(action).unenforced);
  }
  if (r.retryPolicy) out.push('retries');
  if (has(r.requestHeadersToAdd) || has(r.requestHeadersToRemove)) out.push('request header changes');
  if (has(r.responseHeadersToAdd) || has(r.responseHeadersToRemove)) out.push('response header changes');
  // Per-filter config: fault injection (envoy.filters.http.fault), CORS, rate limits, ... named by filter.
  for (const filter of Object.keys(r.typedPerFilterConfig ?? {}).sort()) out.push(`filter ${filter}`);
  return out;
}

/** A Duration that is set and not zero (istiod sends `timeout: 0s`, meaning none). */
function nonZero(d: M): boolean {
  return Boolean(d && (Number(d.seconds ?? 0) !== 0 || Number(d.nanos ?? 0) !== 0));
}

/** Why a route has no cluster to program (only `route.cluster` and `route.weighted_clusters` have one). */
export function actionReason(r: M): string {
  if (r.redirect) return 'redirect';
  if (r.directResponse) return 'direct response';
  if (r.route?.clusterHeader) return 'cluster from a request header';
  return r.route ? 'no cluster' : 'no route action';
}

/**
 * RouteAction.hash_policy as the kernel keeps it: one header or cookie (Istio's consistentHash httpHeaderName /
 * httpCookie). Envoy combines several policies and goes on past an absent key; the kernel hashes the first one
 * only, and without its key picks by weight: the rest is listed as unenforced. A cookie with a ttl is hashed when
 * the request has it; Envoy would also generate it for a request without it (a Set-Cookie on the response), which
 * the kernel does not: listed.
 */
export function routeHashPolicy(action: M): { policy?: RouteHashPolicy; unenforced: string[] } {
  const list: M[] = action?.hashPolicy ?? [];
  const first = list[0];
  if (!first) return { unenforced: [] };
  const policy = oneHashPolicy(first);
  if (typeof policy === 'string') return { unenforced: [`hash policy (${policy})`] };
  const unenforced = first.cookie?.ttl ? ['hash policy: cookie generation (ttl)'] : [];
  if (list.length > 1) unenforced.push(`hash policy: ${list.length - 1} after the first (only the first is hashed)`);
  return { policy, unenforced };
}

function oneHashPolicy(p: M): RouteHashPolicy | string {
  switch (p.policySpecifier) {
    case 'header':
      if (p.header.regexRewrite) return 'header with regex rewrite';
      return { kind: 'header', name: String(p.header.headerName ?? '').toLowerCase() };
    case 'cookie':
      return { kind: 'cookie', name: String(p.cookie.name ?? '') };
    case 'connectionProperties':
      return 'source IP';
    case 'queryParameter':
      return 'query parameter';
    case 'filterState':
      return 'filter state';
    default:
      return `${p.policySpecifier ?? 'empty'}`;
  }
}
