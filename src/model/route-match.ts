/**
 * What an HTTP listener's routes mean, as a pure function: the reference the kernel's matcher is tested against.
 * Given a request head (method, request target, Host and headers), the virtual host is chosen by Host, then the first
 * route of that host whose every present condition holds wins.
 */
import type {
  HeaderMatcher,
  HttpRoute,
  Listener,
  PathMatcher,
  RouteMatch,
  StringMatcher,
  VirtualHost,
  WeightedCluster,
} from './types.js';

export interface RequestHead {
  /** As sent, e.g. GET (methods are case-sensitive). */
  method: string;
  /** The request target in origin form, e.g. /v2/items?id=1. */
  path: string;
  /** Header fields in order; names in any case, values as sent. Host is one of them. */
  headers: Array<[name: string, value: string]>;
}

export interface RouteChoice {
  vhost: VirtualHost;
  route: HttpRoute;
}

/** The first matching route of the virtual host chosen by Host, or undefined (no virtual host or no route). */
export function chooseRoute(vhosts: VirtualHost[], req: RequestHead): RouteChoice | undefined {
  const vhost = chooseVirtualHost(vhosts, headerValue(req.headers, 'host') ?? '');
  const route = vhost?.routes.find((r) => routeMatches(r.match, req));
  return vhost && route ? { vhost, route } : undefined;
}

/**
 * Where a listener sends a connection whose first request is `req`: the matching route's clusters, or the listener's
 * default route (`route` undefined) when no virtual host or route matches. `req` undefined = not HTTP/1.x.
 */
export function routeConnection(
  listener: Pick<Listener, 'routes' | 'virtualHosts'>,
  req: RequestHead | undefined,
): { route?: HttpRoute; clusters: WeightedCluster[] } {
  const choice = req && chooseRoute(listener.virtualHosts ?? [], req);
  return choice ? { route: choice.route, clusters: choice.route.clusters } : { clusters: listener.routes };
}

/**
 * Envoy's order: an exact domain, then the longest `*suffix`, then the longest `prefix*`, then `*`. Host is compared
 * in lower case; a domain with `:port` matches only that port, one without matches the host on any port. Where both
 * match equally, the one naming the port wins.
 */
export function chooseVirtualHost(vhosts: VirtualHost[], host: string): VirtualHost | undefined {
  const full = host.toLowerCase();
  const bare = withoutPort(full);
  let best: { vhost: VirtualHost; score: number } | undefined;
  for (const vhost of vhosts) {
    for (const domain of vhost.domains) {
      const hasPort = withoutPort(domain) !== domain;
      const score = domainScore(withoutPort(domain), hasPort ? (domain === full ? bare : undefined) : bare, hasPort);
      if (score > 0 && (!best || score > best.score)) best = { vhost, score };
    }
  }
  return best?.vhost;
}

/** Higher is more specific; 0 is no match. `host` is undefined when the domain's port differs from the request's. */
function domainScore(name: string, host: string | undefined, hasPort: boolean): number {
  if (host === undefined) return 0;
  const port = hasPort ? 1 : 0;
  // Kinds are 1000 apart (names are at most a few hundred bytes), lengths order within a kind.
  if (name === '*') return 1 + port;
  if (name.startsWith('*'))
    return host.endsWith(name.slice(1)) && host.length > name.length - 1 ? 2000 + 2 * name.length + port : 0;
  if (name.endsWith('*'))
    return host.startsWith(name.slice(0, -1)) && host.length > name.length - 1 ? 1000 + 2 * name.length + port : 0;
  return name === host ? 3000 + port : 0;
}

/** `host:port` → `host`; `[v6]:port` → `[v6]`; anything else unchanged. */
function withoutPort(host: string): string {
  const m = /^(\[[^\]]*\]|[^:]*):\d+$/.exec(host);
  return m ? (m[1] as string) : host;
}

export function routeMatches(match: RouteMatch, req: RequestHead): boolean {
  if (match.method !== undefined && match.method !== req.method) return false;
  if (match.path && !pathMatches(match.path, req.path)) return false;
  return match.headers.every((h) => headerMatches(h, req));
}

/** The query and fragment are not part of the path (matcher values contain neither). */
function pathMatches(m: PathMatcher, target: string): boolean {
  const path = target.replace(/[?#].*$/s, '');
  switch (m.kind) {
    case 'exact':
      return path === m.value;
    case 'prefix':
      return path.startsWith(m.value);
    case 'separated_prefix':
      return path === m.value || path.startsWith(`${m.value}/`);
  }
}

function headerMatches(h: HeaderMatcher, req: RequestHead): boolean {
  const value = h.name === ':method' ? req.method : headerValue(req.headers, h.name === ':authority' ? 'host' : h.name);
  // Envoy's rule: a missing header fails every matcher except `present`, which alone honours invert there.
  if (value === undefined) return h.matcher.kind === 'present' && h.invert;
  return stringMatches(h.matcher, value) !== h.invert;
}

function stringMatches(m: StringMatcher, value: string): boolean {
  switch (m.kind) {
    case 'present':
      return true;
    case 'exact':
      return value === m.value;
    case 'prefix':
      return value.startsWith(m.value);
    case 'suffix':
      return value.endsWith(m.value);
  }
}

/** A header's value without surrounding whitespace; repeated fields joined with "," (RFC 9110 5.3). */
export function headerValue(headers: RequestHead['headers'], name: string): string | undefined {
  const values = headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v.trim());
  return values.length > 0 ? values.join(',') : undefined;
}
