/**
 * Decoded xDS state → MeshModel (source 'xds'). Pure: the client owns the state and DNS results and calls this on
 * every change, so the same inputs always give the same model (tests rely on it).
 */

import { isIP } from 'node:net';
import type { Cluster, Endpoint, Listener, MeshModel, UnenforcedRoute, WeightedCluster } from '../../model/types.js';
import { MAX_ROUTE_CLUSTERS } from '../../model/validate.js';
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

export interface Conversion {
  model: MeshModel;
  /** Subscriptions the state implies: EDS names of EDS clusters, RDS names referenced by listeners. */
  edsNames: string[];
  rdsNames: string[];
  /** Hostnames of STRICT_DNS/LOGICAL_DNS endpoints the caller must resolve. */
  dnsHosts: string[];
  /** Listener names held back because a cluster has no endpoints (or is unknown / unsupported). */
  warming: string[];
  notes: string[];
}

function clusterEndpoints(c: XCluster, state: XdsState, dns: Map<string, string[]>): Endpoint[] {
  if (c.kind === 'eds') return state.assignments.get(c.edsName ?? c.name)?.endpoints ?? [];
  const out: Endpoint[] = [];
  for (const { host, ...rest } of c.endpoints) {
    if (isIP(host)) out.push({ address: host, ...rest });
    else for (const ip of dns.get(host) ?? []) out.push({ address: ip, ...rest });
  }
  return out;
}

/**
 * The same Cluster object for an unchanged cluster (same decoded resource, same assignment, same DNS table):
 * a one-endpoint change then hands the daemon 999 identical objects it can recognise without comparing.
 */
const clusterMemo = new WeakMap<
  XCluster,
  { assignment?: XLoadAssignment; dns?: Map<string, string[]>; model: Cluster }
>();

function modelCluster(c: XCluster, state: XdsState, dns: Map<string, string[]>): Cluster {
  const assignment = c.kind === 'eds' ? state.assignments.get(c.edsName ?? c.name) : undefined;
  const memo = clusterMemo.get(c);
  if (memo && memo.assignment === assignment && (c.kind !== 'dns' || memo.dns === dns)) return memo.model;
  const mc: Cluster = { name: c.name, lbPolicy: c.lbPolicy, endpoints: clusterEndpoints(c, state, dns), source: 'xds' };
  if (c.circuitBreakers !== undefined) mc.circuitBreakers = c.circuitBreakers;
  if (c.outlierDetection !== undefined) mc.outlierDetection = c.outlierDetection;
  const entry: { assignment?: XLoadAssignment; dns?: Map<string, string[]>; model: Cluster } = { model: mc };
  if (assignment) entry.assignment = assignment;
  if (c.kind === 'dns') entry.dns = dns;
  clusterMemo.set(c, entry);
  return mc;
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

interface Candidate {
  name: string;
  address: string;
  port: number;
  protocol: Listener['protocol'];
  routes: WeightedCluster[];
  unenforced: UnenforcedRoute[];
}

function vhostFor(rc: XRouteConfig, address: string, port: number): XVirtualHost | undefined {
  const exact = rc.vhosts.find((v) => vipsFromDomains(v.domains, port).includes(address));
  return exact ?? rc.vhosts.find((v) => v.domains.includes('*')) ?? (rc.vhosts.length === 1 ? rc.vhosts[0] : undefined);
}

function candidates(l: XListener, state: XdsState, rdsNames: Set<string>, notes: string[]): Candidate[] {
  const out: Candidate[] = [];
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
      rdsNames.add(e.target.name);
      rc = state.routes.get(e.target.name);
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
            routes: vh.l4,
            unenforced: vh.unenforced,
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
        out.push({ name, address: a, port: e.port, protocol: e.protocol, routes: vh.l4, unenforced: vh.unenforced });
      }
    }
  }
  return out;
}

export function convert(state: XdsState, dns: Map<string, string[]>): Conversion {
  const notes: string[] = [];
  const clusters: Cluster[] = [];
  const byName = new Map<string, Cluster>();
  const edsNames = new Set<string>();
  const dnsHosts = new Set<string>();
  for (const c of state.clusters.values()) {
    if (c.kind === 'unsupported') {
      notes.push(`cluster ${c.name}: not programmed (${c.reason})`);
      continue;
    }
    if (c.kind === 'eds') edsNames.add(c.edsName ?? c.name);
    if (c.kind === 'dns') for (const e of c.endpoints) if (!isIP(e.host)) dnsHosts.add(e.host);
    const mc = modelCluster(c, state, dns);
    // The data path has no "no healthy upstream" state: a cluster is programmed only with endpoints
    // (the daemon rejects empty ones), and its listeners wait for it — Envoy's warming, applied throughout.
    if (mc.endpoints.length === 0) {
      notes.push(`cluster ${c.name}: no endpoints yet`);
      continue;
    }
    clusters.push(mc);
    byName.set(c.name, mc);
  }

  const rdsNames = new Set<string>();
  const listeners: Listener[] = [];
  const seenAddr = new Map<string, string>();
  const seenName = new Set<string>();
  const warming: string[] = [];
  // Listeners in name order so that clash resolution (first wins) does not depend on push order.
  const ordered = [...state.listeners.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const l of ordered) {
    if (l.skipped) continue;
    for (const c of candidates(l, state, rdsNames, notes)) {
      // the model checks this too; here the NACK names the xDS resource
      if (c.routes.length > MAX_ROUTE_CLUSTERS) {
        throw new XdsResourceError(
          `listener ${c.name}: ${c.routes.length} weighted clusters (limit ${MAX_ROUTE_CLUSTERS})`,
        );
      }
      // Warming: programmed only once every cluster it routes to has endpoints.
      if (c.routes.some((r) => !byName.has(r.cluster))) {
        warming.push(c.name);
        continue;
      }
      // TCP and HTTP share the kernel's TCP hook, so they clash on one address and port.
      const key = `${c.address}|${c.port}|${c.protocol === 'udp' ? 'udp' : 'tcp'}`;
      const other = seenAddr.get(key);
      if (other !== undefined || seenName.has(c.name)) {
        notes.push(`listener ${c.name}: ${c.address}:${c.port} already programmed by ${other ?? c.name}; skipped`);
        continue;
      }
      seenAddr.set(key, c.name);
      seenName.add(c.name);
      const ml: Listener = {
        name: c.name,
        address: c.address,
        port: c.port,
        protocol: c.protocol,
        routes: c.routes,
        source: 'xds',
      };
      if (c.unenforced.length > 0) ml.unenforcedRoutes = c.unenforced;
      listeners.push(ml);
    }
  }
  return {
    model: { listeners, clusters },
    edsNames: [...edsNames].sort(),
    rdsNames: [...rdsNames].sort(),
    dnsHosts: [...dnsHosts].sort(),
    warming,
    notes,
  };
}
