/**
 * Decoded xDS resources → model pieces, one resource at a time. Pure: the same inputs always give the same
 * output (tests rely on it). The incremental bookkeeping — which resource depends on which, warming, address
 * clashes — lives in model-builder.ts, which calls these for the resources that changed.
 */

import { isIP } from 'node:net';
import type {
  Cluster,
  Endpoint,
  Listener,
  LocalityWeight,
  UnenforcedRoute,
  VirtualHost,
  WeightedCluster,
} from '../../model/types.js';
import { MAX_ROUTE_CLUSTERS } from '../../model/validate.js';
import { localityName } from '../../model/validate-resilience.js';
import {
  type XCluster,
  XdsResourceError,
  type XListener,
  type XLoadAssignment,
  type XRouteConfig,
  type XVirtualHost,
} from './resources.js';

export interface XdsState {
  clusters: Map<string, XCluster>;
  /** Keyed by ClusterLoadAssignment name (= the cluster's EDS service name). */
  assignments: Map<string, XLoadAssignment>;
  listeners: Map<string, XListener>;
  routes: Map<string, XRouteConfig>;
}

export function emptyState(): XdsState {
  return { clusters: new Map(), assignments: new Map(), listeners: new Map(), routes: new Map() };
}

/** The EDS resource an EDS cluster takes its endpoints from. */
export function edsNameOf(c: XCluster): string | undefined {
  return c.kind === 'eds' ? (c.edsName ?? c.name) : undefined;
}

/** Hostnames of a STRICT_DNS/LOGICAL_DNS cluster the daemon must resolve. */
export function dnsHostsOf(c: XCluster): string[] {
  return c.kind === 'dns' ? [...new Set(c.endpoints.filter((e) => !isIP(e.host)).map((e) => e.host))] : [];
}

function clusterEndpoints(
  c: XCluster,
  assignment: XLoadAssignment | undefined,
  dns: Map<string, string[]>,
): Endpoint[] {
  if (c.kind === 'eds') return assignment?.endpoints ?? [];
  const out: Endpoint[] = [];
  for (const { host, ...rest } of c.endpoints) {
    if (isIP(host)) out.push({ address: host, ...rest });
    else for (const ip of dns.get(host) ?? []) out.push({ address: ip, ...rest });
  }
  return out;
}

/**
 * The model cluster, or a note on why there is none: 'unsupported' kinds are never programmed, and the data path
 * has no "no healthy upstream" state, so a cluster is programmed only with endpoints (the daemon rejects empty
 * ones) and its listeners wait for it — Envoy's warming, applied throughout.
 */
export function modelCluster(
  c: XCluster,
  assignment: XLoadAssignment | undefined,
  dns: Map<string, string[]>,
): Cluster | string {
  if (c.kind === 'unsupported') return `cluster ${c.name}: not programmed (${c.reason})`;
  const mc: Cluster = {
    name: c.name,
    lbPolicy: c.lbPolicy,
    endpoints: clusterEndpoints(c, assignment, dns),
    source: 'xds',
  };
  if (mc.endpoints.length === 0) return `cluster ${c.name}: no endpoints yet`;
  applyResilience(mc, c, c.kind === 'eds' ? assignment?.localityWeights : c.localityWeights);
  const factor = c.kind === 'eds' ? assignment?.overprovisioningFactor : c.overprovisioningFactor;
  if (factor !== undefined) mc.overprovisioningFactor = factor;
  return mc;
}

/** The cluster's resilience settings; locality weights only where common_lb_config asks for them (as Envoy). */
function applyResilience(mc: Cluster, c: XCluster, localityWeights: LocalityWeight[] | undefined): void {
  const { localityWeighted, ...settings } = c.resilience;
  Object.assign(mc, settings);
  if (!localityWeighted || !localityWeights) return;
  // A locality weight for a locality all of whose endpoints are unhealthy (skipped) would name nothing.
  const present = new Set(mc.endpoints.map((ep) => localityName(ep.locality)));
  mc.localityWeights = localityWeights.filter((lw) => present.has(localityName(lw.locality)));
}

/** Service addresses named by a virtual host: `<IP>` and `<IP>:<port>` domains (IPv6 as `[addr]:port`). */
export function vipsFromDomains(domains: string[], port: number): string[] {
  const out: string[] = [];
  for (const d of domains) {
    if (isIP(d)) out.push(d);
    else {
      const m = /^\[?([0-9A-Fa-f:.]+?)\]?:(\d+)$/.exec(d);
      if (m && isIP(m[1] as string) && Number(m[2]) === port) out.push(m[1] as string);
    }
  }
  return [...new Set(out)].filter((a) => a !== '0.0.0.0' && a !== '::');
}

export interface Candidate {
  name: string;
  address: string;
  port: number;
  protocol: Listener['protocol'];
  routes: WeightedCluster[];
  unenforced: UnenforcedRoute[];
  /** HTTP routes of the virtual host this address selects; the same object on every push while unchanged. */
  http?: VirtualHost;
}

/** The candidate fields a virtual host gives. */
function fromVhost(vh: XVirtualHost & { l4: WeightedCluster[] }): Pick<Candidate, 'routes' | 'unenforced' | 'http'> {
  return vh.http
    ? { routes: vh.l4, unenforced: vh.unenforced, http: vh.http }
    : { routes: vh.l4, unenforced: vh.unenforced };
}

/** RDS names a listener's HTTP filter chains refer to (the RDS subscription follows them). */
export function rdsNamesOf(l: XListener): string[] {
  const out = new Set<string>();
  if (!l.skipped) for (const e of l.entries) if (e.target.kind === 'rds') out.add(e.target.name);
  return [...out];
}

function vhostFor(rc: XRouteConfig, address: string, port: number): XVirtualHost | undefined {
  const exact = rc.vhosts.find((v) => vipsFromDomains(v.domains, port).includes(address));
  return exact ?? rc.vhosts.find((v) => v.domains.includes('*')) ?? (rc.vhosts.length === 1 ? rc.vhosts[0] : undefined);
}

/**
 * The (address, port) listeners one xDS listener yields, in its own order; routes are looked up by name.
 * Throws XdsResourceError for what the data path cannot hold, naming the listener.
 */
export function candidates(
  l: XListener,
  routeOf: (name: string) => XRouteConfig | undefined,
  notes: string[],
): Candidate[] {
  const out: Candidate[] = [];
  if (l.skipped) return out;
  const multi = l.entries.length > 1 || l.entries.some((e) => e.addresses.length > 1);
  for (const e of l.entries) {
    const nameFor = (addr: string) => (multi ? `${l.name}~${addr}:${e.port}` : l.name);
    if (e.target.kind === 'clusters') {
      if (e.addresses.length === 0)
        notes.push(`listener ${l.name}: wildcard tcp_proxy on port ${e.port} not programmed (no service address)`);
      for (const a of e.addresses)
        out.push({
          name: nameFor(a),
          address: a,
          port: e.port,
          protocol: e.protocol,
          routes: e.target.routes,
          unenforced: [],
        });
      continue;
    }
    let rc: XRouteConfig | undefined;
    if (e.target.kind === 'rds') {
      rc = routeOf(e.target.name);
      if (!rc) continue; // RDS not received yet: nothing to derive; warms when it arrives
    } else rc = e.target.config;
    if (e.addresses.length > 0) {
      for (const a of e.addresses) {
        const vh = vhostFor(rc, a, e.port);
        if (vh?.l4)
          out.push({
            name: nameFor(a),
            address: a,
            port: e.port,
            protocol: e.protocol,
            ...fromVhost({ ...vh, l4: vh.l4 }),
          });
        else notes.push(`listener ${l.name}: no virtual host routes ${a}:${e.port} to one destination`);
      }
      continue;
    }
    // Wildcard HTTP listener (istiod's 0.0.0.0_<port>): the service addresses are the vhosts' IP domains.
    for (const vh of rc.vhosts) {
      const vips = vipsFromDomains(vh.domains, e.port);
      if (vips.length === 0) continue;
      if (!vh.l4) {
        notes.push(
          `route ${rc.name} vhost ${vh.name}: no route for the whole host; ${vips.join(',')}:${e.port} not programmed`,
        );
        continue;
      }
      for (const a of vips) {
        const name = isIP(a) === 6 ? `[${a}]_${e.port}` : `${a}_${e.port}`;
        out.push({ name, address: a, port: e.port, protocol: e.protocol, ...fromVhost({ ...vh, l4: vh.l4 }) });
      }
    }
  }
  return out;
}

/** The model listener of a candidate; the weighted-cluster limit is checked here so the NACK names it. */
export function modelListener(c: Candidate): Listener {
  // the model checks this too; here the NACK names the xDS resource
  if (c.routes.length > MAX_ROUTE_CLUSTERS) {
    throw new XdsResourceError(
      `listener ${c.name}: ${c.routes.length} weighted clusters (limit ${MAX_ROUTE_CLUSTERS})`,
    );
  }
  const ml: Listener = {
    name: c.name,
    address: c.address,
    port: c.port,
    protocol: c.protocol,
    routes: c.routes,
    source: 'xds',
  };
  if (c.unenforced.length > 0) ml.unenforcedRoutes = c.unenforced;
  if (c.http && c.protocol === 'http') ml.virtualHosts = [c.http];
  return ml;
}

/** TCP and HTTP share the kernel's TCP hook, so they clash on one address and port. */
export function clashKey(c: Candidate): string {
  return `${c.address}|${c.port}|${c.protocol === 'udp' ? 'udp' : 'tcp'}`;
}
