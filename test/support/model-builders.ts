/** Terse MeshModel builders for tests of the pure model code. */
import type {
  Cluster,
  Endpoint,
  HeaderMatcher,
  HttpRoute,
  Listener,
  RouteMatch,
  StringMatcher,
  VirtualHost,
} from '../../src/model/types.js';

export const ep = (address: string, port: number, weight = 1): Endpoint => ({ address, port, weight });

export const cluster = (
  name: string,
  endpoints: Endpoint[] = [ep('127.0.0.1', 9081)],
  extra: Partial<Omit<Cluster, 'name' | 'endpoints'>> = {},
): Cluster => ({ name, lbPolicy: 'round_robin', endpoints, source: 'xds', ...extra });

export const listener = (
  name: string,
  address: string,
  port: number,
  routes: Array<[string, number]>,
  protocol: Listener['protocol'] = 'tcp',
  source: Listener['source'] = 'xds',
): Listener => ({
  name,
  address,
  port,
  protocol,
  routes: routes.map(([c, weight]) => ({ cluster: c, weight })),
  source,
});

/** An HTTP route: `match` as in the model, action one cluster or a weighted split. */
export const route = (
  name: string,
  match: Partial<RouteMatch>,
  clusters: Array<[string, number]> | string,
): HttpRoute => ({
  name,
  match: { headers: [], ...match },
  clusters:
    typeof clusters === 'string'
      ? [{ cluster: clusters, weight: 1 }]
      : clusters.map(([c, weight]) => ({ cluster: c, weight })),
});

export const vhost = (name: string, domains: string[], routes: HttpRoute[]): VirtualHost => ({ name, domains, routes });

export const header = (name: string, matcher: StringMatcher, invert = false): HeaderMatcher => ({
  name,
  matcher,
  invert,
});
