/** Terse MeshModel builders for tests of the pure model code. */
import type { Cluster, Endpoint, Listener } from '../../src/model/types.js';

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
