/**
 * HTTP routes in one line each, for `kmeshctl dump`: what every http listener routes where, in match order, and what
 * of its source config is not enforced. The model itself is in the dump too; this is the part an operator reads.
 */
import type { HeaderMatcher, HttpRoute, MeshModel, VirtualHost, WeightedCluster } from './types.js';
import { PATH_KEYS } from './validate.js';

export interface ListenerRoutesText {
  /** `<vhost domains> <route name>: <conditions> -> <clusters>`, first match first. */
  routes: string[];
  /** Where connections go that are not HTTP/1.x (and every connection when there are no routes). */
  default: string;
  unenforced: string[];
}

/** By listener name; only http listeners with routes or unenforced items. */
export function routesText(model: MeshModel): Record<string, ListenerRoutesText> {
  const out: Record<string, ListenerRoutesText> = {};
  for (const l of model.listeners) {
    if (l.protocol !== 'http' || (!l.virtualHosts && !l.unenforcedRoutes)) continue;
    out[l.name] = {
      routes: (l.virtualHosts ?? []).flatMap((vh) => vh.routes.map((r) => routeText(vh, r))),
      default: clustersText(l.routes),
      unenforced: (l.unenforcedRoutes ?? []).map((u) => u.description),
    };
  }
  return out;
}

export function routeText(vh: VirtualHost, r: HttpRoute): string {
  const { path, method, headers } = r.match;
  const conditions = [
    ...(method !== undefined ? [`method ${method}`] : []),
    ...(path ? [`${PATH_KEYS[path.kind]} ${path.value}`] : []),
    ...headers.map(headerText),
  ];
  const hash = r.hashPolicy ? ` (hash ${r.hashPolicy.kind} ${r.hashPolicy.name})` : '';
  return `[${vh.domains.join(' ')}] ${r.name}: ${conditions.join(' and ') || 'any request'} -> ${clustersText(r.clusters)}${hash}`;
}

function headerText(h: HeaderMatcher): string {
  const m = h.matcher;
  if (m.kind === 'present') return `header ${h.name} ${h.invert ? 'absent' : 'present'}`;
  return `header ${h.name} ${h.invert ? 'not ' : ''}${m.kind} ${JSON.stringify(m.value)}`;
}

/** `a` for one cluster; `a 90%, b 10%` for a split (shares rounded to 0.1%). */
export function clustersText(clusters: WeightedCluster[]): string {
  if (clusters.length === 1) return clusters[0]?.cluster ?? '';
  const total = clusters.reduce((sum, c) => sum + c.weight, 0);
  return clusters.map((c) => `${c.cluster} ${Math.round((1000 * c.weight) / total) / 10}%`).join(', ');
}
