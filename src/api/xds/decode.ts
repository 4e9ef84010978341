/**
 * Wire → decoded resources. Everything a control plane sends passes through here, so every field read is
 * defensive: protobufjs yields defaults for absent scalars and null for absent messages.
 */
import { isIP } from 'node:net';
import type protobuf from 'protobufjs';
import type { Endpoint, HttpRoute, LbPolicy, LocalityWeight, Protocol, WeightedCluster } from '../../model/types.js';
import { virtualHostProblems } from '../../model/validate.js';
import { localityName, RESILIENCE_LIMITS } from '../../model/validate-resilience.js';
import { decodeClusterResilience, overprovisioningFactor } from './cluster-resilience.js';
import { TYPE, toPlain, xdsTypes } from './protos.js';
import { strictReader } from './reader.js';
import {
  type RawEndpoint,
  type XCluster,
  XdsResourceError,
  type XListener,
  type XListenerEntry,
  type XLoadAssignment,
  type XRouteConfig,
  type XTarget,
  type XVirtualHost,
} from './resources.js';
import { actionReason, routeHashPolicy, routeMatch, unenforcedFeatures } from './routes.js';

/** Limits against a control plane that sends garbage or floods: beyond them the response is NACKed. */
export const LIMITS = { resourcesPerResponse: 200_000, endpointsPerAssignment: 100_000, nameLength: 1024 };

// protobufjs messages are untyped bags; this alias keeps the reads below readable.
// biome-ignore lint/suspicious/noExplicitAny: decoded protobuf messages are dynamic
type M = any;

const HEALTH_UNHEALTHY = 2;
const HEALTH_DRAINING = 3;
const TRAFFIC_INBOUND = 1;
const SOCKET_UDP = 1;

const LB: Record<number, LbPolicy> = {
  0: 'round_robin',
  1: 'least_request',
  2: 'ring_hash',
  3: 'random',
  5: 'maglev',
};

export interface DecodedResponse {
  versionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: AnyList;
}

/**
 * The resources (google.protobuf.Any) of a response as places in its bytes: no object and no view per resource
 * (a SotW resend carries 1,000, nearly all unchanged: those objects and views were most of what a resend allocated).
 */
export interface AnyList {
  bytes: Uint8Array;
  /** Each resource's type URL (equal ones are one string). */
  typeUrls: string[];
  /** Where each resource's value starts and ends in `bytes`: two numbers per resource. */
  bounds: number[];
}

/** Resource `i` of the list as an Any (a view of the response's bytes). */
export function anyAt(list: AnyList, i: number): { typeUrl: string; value: Uint8Array } {
  return { typeUrl: list.typeUrls[i] ?? '', value: list.bytes.subarray(list.bounds[2 * i], list.bounds[2 * i + 1]) };
}

const LEN = 2; // wire type of strings, bytes and messages
const ANY_TYPE_URL = (1 << 3) | LEN;
const ANY_VALUE = (2 << 3) | LEN;

/** A length-delimited field's end; throws when it runs past `limit`. */
function delimited(r: protobuf.Reader, limit: number): number {
  const len = r.uint32();
  if (r.pos + len > limit) throw new Error(`length ${len} at offset ${r.pos} runs past the end`);
  return r.pos + len;
}

function sameBytes(b: Uint8Array, x: number, y: number, len: number): boolean {
  for (let i = 0; i < len; i++) if (b[x + i] !== b[y + i]) return false;
  return true;
}

/**
 * Decodes the DiscoveryResponse envelope. Throws (plain Error) on malformed protobuf. Read by hand rather than
 * by protobufjs: a SotW EDS resend carries 1,000 resources, and each Any's type URL decoded into a fresh string
 * in a fresh object was most of the envelope's cost; here a type URL equal to the previous one (by bytes) is
 * that one's string. A plain Uint8Array reader: protobufjs's Buffer reader silently truncates a string whose
 * length runs past the end, while the plain one rejects it — and truncated input must be NACKed, not half-read.
 */
export function decodeResponse(buf: Uint8Array): DecodedResponse {
  const r = strictReader(buf);
  const bytes = r.buf;
  const resources: AnyList = { bytes, typeUrls: [], bounds: [] };
  const out: DecodedResponse = { versionInfo: '', typeUrl: '', nonce: '', resources };
  let url = { start: 0, len: -1, text: '' };
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field >= 1 && field <= 5 && field !== 3 && (tag & 7) !== LEN)
      throw new Error(`field ${field}: wire type ${tag & 7}`);
    if (field === 1) out.versionInfo = r.string();
    else if (field === 4) out.typeUrl = r.string();
    else if (field === 5) out.nonce = r.string();
    else if (field !== 2) r.skipType(tag & 7);
    else {
      const end = delimited(r, r.len);
      let typeUrl = '';
      let [valueStart, valueEnd] = [0, 0]; // an Any without a value: empty
      while (r.pos < end) {
        const t = r.uint32();
        if (t === ANY_TYPE_URL) {
          const start = r.pos;
          const stop = delimited(r, end);
          const len = stop - r.pos;
          if (len !== url.len || !sameBytes(bytes, r.pos, url.start, len)) {
            r.pos = start;
            url = { start: stop - len, len, text: r.string() };
          }
          typeUrl = url.text;
          r.pos = stop;
        } else if (t === ANY_VALUE) {
          const stop = delimited(r, end);
          [valueStart, valueEnd] = [r.pos, stop];
          r.pos = stop;
        } else if (t >>> 3 === 1 || t >>> 3 === 2) throw new Error(`Any field ${t >>> 3}: wire type ${t & 7}`);
        else r.skipType(t & 7);
        if (r.pos > end) throw new Error(`resource at offset ${end} runs past its end`);
      }
      resources.typeUrls.push(typeUrl);
      resources.bounds.push(valueStart, valueEnd);
    }
  }
  return out;
}

export interface DeltaResource {
  name: string;
  version: string;
  /** Absent when the server sent a name without a body (NACKed). */
  resource?: { typeUrl: string; value: Uint8Array };
}

export interface DecodedDeltaResponse {
  systemVersionInfo: string;
  typeUrl: string;
  nonce: string;
  resources: DeltaResource[];
  removed: string[];
}

/** Decodes a DeltaDiscoveryResponse envelope (strict reader, as decodeResponse). Throws on malformed protobuf. */
export function decodeDeltaResponse(buf: Uint8Array): DecodedDeltaResponse {
  const msg: M = xdsTypes().DeltaDiscoveryResponse.decode(strictReader(buf));
  return {
    systemVersionInfo: msg.systemVersionInfo ?? '',
    typeUrl: msg.typeUrl ?? '',
    nonce: msg.nonce ?? '',
    resources: (msg.resources ?? []).map((r: M) => {
      const out: DeltaResource = { name: r.name ?? '', version: r.version ?? '' };
      if (r.resource) out.resource = { typeUrl: r.resource.typeUrl ?? '', value: r.resource.value ?? new Uint8Array() };
      return out;
    }),
    removed: [...(msg.removedResources ?? [])],
  };
}

function decodeAs(type: protobuf.Type, value: Uint8Array, what: string): M {
  try {
    return type.decode(strictReader(value));
  } catch (e) {
    throw new XdsResourceError(`${what}: malformed ${type.name}: ${(e as Error).message}`);
  }
}

/** Unwraps envoy.service.discovery.v3.Resource and checks the type URL matches the response's. */
export function unwrap(any: { typeUrl: string; value: Uint8Array }, typeUrl: string, index: number): Uint8Array {
  if (any.typeUrl === TYPE.resource) {
    const r: M = decodeAs(xdsTypes().Resource, any.value, `resource #${index}`);
    if (!r.resource) throw new XdsResourceError(`resource #${index}: Resource wrapper without a resource`);
    return unwrap({ typeUrl: r.resource.typeUrl ?? '', value: r.resource.value ?? new Uint8Array() }, typeUrl, index);
  }
  if (any.typeUrl !== typeUrl) {
    throw new XdsResourceError(`resource #${index}: type ${any.typeUrl || '(none)'} in a ${typeUrl} response`);
  }
  return any.value;
}

const enums = new Map<string, protobuf.Enum>();

/**
 * An enum field's value, checked against the proto's enum. protobufjs keeps a number it does not know as is;
 * the data path must not guess what a newer control plane meant by it (e.g. a new lb_policy as round robin).
 */
function known(enumName: string, value: number | null | undefined, what: string, field: string): number {
  let e = enums.get(enumName);
  if (!e) {
    e = xdsTypes().root.lookupEnum(enumName);
    enums.set(enumName, e);
  }
  const v = value ?? 0;
  if (e.valuesById[v] === undefined) throw new XdsResourceError(`${what}: unknown ${field} value ${v}`);
  return v;
}

function checkName(name: unknown, kind: string, index: number): string {
  if (typeof name !== 'string' || name === '') throw new XdsResourceError(`${kind} #${index}: missing name`);
  if (name.length > LIMITS.nameLength)
    throw new XdsResourceError(`${kind} #${index}: name longer than ${LIMITS.nameLength}`);
  return name;
}

function checkPort(port: unknown, what: string): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new XdsResourceError(`${what}: port ${String(port)} out of range 1..65535`);
  }
  return port;
}

function locality(l: M): Endpoint['locality'] | undefined {
  if (!l || (!l.region && !l.zone && !l.subZone)) return undefined;
  const out: NonNullable<Endpoint['locality']> = {};
  if (l.region) out.region = l.region;
  if (l.zone) out.zone = l.zone;
  if (l.subZone) out.subZone = l.subZone;
  return out;
}

/**
 * Endpoints of a ClusterLoadAssignment; UNHEALTHY and DRAINING hosts are skipped (not an error). In the model's
 * shape (EDS hands them on as they are: 10,000 endpoints in a full push); `address` may be a hostname unless
 * `requireIp`.
 */
function loadAssignmentEndpoints(cla: M, what: string, requireIp: boolean): Endpoint[] {
  const out: Endpoint[] = [];
  for (const loc of cla?.endpoints ?? []) {
    const loca = locality(loc.locality);
    const priority: number = loc.priority ?? 0;
    const [, maxPriority] = RESILIENCE_LIMITS.priority;
    if (priority > maxPriority) {
      throw new XdsResourceError(`${what}: priority ${priority} (the kernel keeps priorities 0..${maxPriority})`);
    }
    for (const lbe of loc.lbEndpoints ?? []) {
      const health = known('envoy.config.core.v3.HealthStatus', lbe.healthStatus, what, 'health_status');
      if (health === HEALTH_UNHEALTHY || health === HEALTH_DRAINING) continue;
      const sa = lbe.endpoint?.address?.socketAddress;
      if (!sa) {
        throw new XdsResourceError(`${what}: endpoint without socket_address (named/pipe endpoints are not supported)`);
      }
      const host: string = sa.address ?? '';
      if (requireIp ? isIP(host) === 0 : host === '') {
        throw new XdsResourceError(`${what}: endpoint address "${host}" is not an IP literal`);
      }
      const port = checkPort(sa.portValue, `${what}: endpoint ${host}`);
      const weight: number = lbe.loadBalancingWeight ? lbe.loadBalancingWeight.value : 1;
      if (!(weight >= 1))
        throw new XdsResourceError(`${what}: endpoint ${host}:${port} has weight ${weight} (must be >= 1)`);
      const ep: Endpoint = { address: host, port, weight };
      if (loca) ep.locality = loca;
      if (priority) ep.priority = priority;
      out.push(ep);
      if (out.length > LIMITS.endpointsPerAssignment) {
        throw new XdsResourceError(`${what}: more than ${LIMITS.endpointsPerAssignment} endpoints`);
      }
    }
  }
  return out;
}

/**
 * Locality weights of a ClusterLoadAssignment; undefined unless every locality has one. The model keeps one
 * weight per locality: a locality repeated at another priority keeps its first weight.
 */
function localityWeights(cla: M, what: string): LocalityWeight[] | undefined {
  const out = new Map<string, LocalityWeight>();
  for (const loc of cla?.endpoints ?? []) {
    if (!loc.loadBalancingWeight) return undefined;
    const weight: number = loc.loadBalancingWeight.value;
    if (!(weight >= 1)) throw new XdsResourceError(`${what}: locality load_balancing_weight ${weight} (must be >= 1)`);
    const l = locality(loc.locality) ?? {};
    const key = localityName(l);
    if (!out.has(key)) out.set(key, { locality: l, weight });
  }
  return out.size > 0 ? [...out.values()] : undefined;
}

export function decodeCluster(bytes: Uint8Array, index: number): XCluster {
  const t = xdsTypes();
  const c: M = decodeAs(t.Cluster, bytes, `cluster #${index}`);
  const name = checkName(c.name, 'cluster', index);
  const what = `cluster ${name}`;
  const lb = LB[known('envoy.config.cluster.v3.Cluster.LbPolicy', c.lbPolicy, what, 'lb_policy')];
  const out: XCluster = {
    name,
    kind: 'unsupported',
    lbPolicy: lb ?? 'round_robin',
    endpoints: [],
    resilience: decodeClusterResilience(c, what),
  };
  if (c.clusterType) {
    out.reason = `custom cluster type ${c.clusterType.name || '(unnamed)'}`;
    return out;
  }
  switch (known('envoy.config.cluster.v3.Cluster.DiscoveryType', c.type, what, 'type')) {
    case 0: // STATIC
      out.kind = 'static';
      out.endpoints = inlineEndpoints(c.loadAssignment, what, true);
      setAssignmentPolicy(out, c.loadAssignment, what);
      break;
    case 1: // STRICT_DNS
    case 2: // LOGICAL_DNS: resolved the same way; connect-time steering has no connection pool to pin
      out.kind = 'dns';
      out.endpoints = inlineEndpoints(c.loadAssignment, what, false);
      setAssignmentPolicy(out, c.loadAssignment, what);
      break;
    case 3: // EDS
      out.kind = 'eds';
      out.edsName = c.edsClusterConfig?.serviceName || name;
      break;
    case 4:
      out.reason = 'ORIGINAL_DST (passthrough) has no endpoints to steer to';
      break;
  }
  return out;
}

/** A STATIC/DNS cluster's own endpoints, hosts to resolve or not. */
function inlineEndpoints(cla: M, what: string, requireIp: boolean): RawEndpoint[] {
  return loadAssignmentEndpoints(cla, what, requireIp).map(({ address, ...rest }) => ({ host: address, ...rest }));
}

/** A load assignment's locality weights and overprovisioning factor, onto the cluster or assignment it belongs to. */
function setAssignmentPolicy(
  out: Pick<XCluster, 'localityWeights' | 'overprovisioningFactor'>,
  cla: M,
  what: string,
): void {
  const weights = localityWeights(cla, what);
  if (weights) out.localityWeights = weights;
  const factor = overprovisioningFactor(cla, what);
  if (factor !== undefined) out.overprovisioningFactor = factor;
}

export function decodeLoadAssignment(bytes: Uint8Array, index: number): XLoadAssignment {
  const cla: M = decodeAs(xdsTypes().ClusterLoadAssignment, bytes, `load assignment #${index}`);
  const name = checkName(cla.clusterName, 'load assignment', index);
  const what = `load assignment ${name}`;
  const out: XLoadAssignment = { name, endpoints: loadAssignmentEndpoints(cla, what, true) };
  setAssignmentPolicy(out, cla, what);
  return out;
}

function positiveWeights(list: Array<{ name: string; weight: number }>, what: string): WeightedCluster[] {
  const out: WeightedCluster[] = [];
  for (const wc of list) {
    if (!wc.name) throw new XdsResourceError(`${what}: weighted cluster without a name`);
    // A zero weight is legal in xDS and means "no traffic": drop it rather than program it.
    if (wc.weight > 0) out.push({ cluster: wc.name, weight: wc.weight });
  }
  if (out.length === 0) throw new XdsResourceError(`${what}: weighted_clusters with no positive weight`);
  return out;
}

function tcpProxyTarget(value: Uint8Array, what: string): XTarget | undefined {
  const tp: M = decodeAs(xdsTypes().TcpProxy, value, what);
  if (tp.cluster) return { kind: 'clusters', routes: [{ cluster: tp.cluster, weight: 1 }] };
  if (tp.weightedClusters) {
    const list = (tp.weightedClusters.clusters ?? []).map((c: M) => ({ name: c.name ?? '', weight: c.weight ?? 0 }));
    return { kind: 'clusters', routes: positiveWeights(list, what) };
  }
  throw new XdsResourceError(`${what}: tcp_proxy without cluster or weighted_clusters`);
}

function hcmTarget(value: Uint8Array, what: string): XTarget {
  const t = xdsTypes();
  const hcm: M = decodeAs(t.HttpConnectionManager, value, what);
  for (const f of hcm.httpFilters ?? []) {
    // Router is the only HTTP filter whose config we read; a malformed one means a broken push.
    if (f.typedConfig?.typeUrl === TYPE.router) decodeAs(t.Router, f.typedConfig.value, `${what}: router filter`);
  }
  if (hcm.rds) {
    if (!hcm.rds.routeConfigName) throw new XdsResourceError(`${what}: rds without route_config_name`);
    return { kind: 'rds', name: hcm.rds.routeConfigName };
  }
  if (hcm.routeConfig)
    return { kind: 'inline', config: routeConfigFrom(hcm.routeConfig, `${what}: inline route_config`) };
  throw new XdsResourceError(`${what}: http_connection_manager without rds or route_config`);
}

/** The L4-relevant target of a filter chain: tcp_proxy wins over HCM (sniffing chains carry both). */
function chainTarget(chain: M, what: string): { target: XTarget; protocol: Protocol } | undefined {
  let http: XTarget | undefined;
  for (const f of chain.filters ?? []) {
    const tc = f.typedConfig;
    if (!tc) continue;
    if (tc.typeUrl === TYPE.tcpProxy) {
      const target = tcpProxyTarget(tc.value, `${what}: tcp_proxy`);
      if (target) return { target, protocol: 'tcp' };
    } else if (tc.typeUrl === TYPE.hcm && !http) {
      http = hcmTarget(tc.value, `${what}: http_connection_manager`);
    }
  }
  return http ? { target: http, protocol: 'http' } : undefined;
}

function hostPrefixes(match: M): string[] {
  const out: string[] = [];
  for (const r of match?.prefixRanges ?? []) {
    const fam = isIP(r.addressPrefix ?? '');
    const len = r.prefixLen ? r.prefixLen.value : fam === 4 ? 32 : 128;
    // Only single-host ranges name a service address; wider CIDRs cannot be a VIP.
    if ((fam === 4 && len === 32) || (fam === 6 && len === 128)) out.push(r.addressPrefix);
  }
  return out;
}

export function decodeListener(bytes: Uint8Array, index: number): XListener {
  const l: M = decodeAs(xdsTypes().Listener, bytes, `listener #${index}`);
  const name = checkName(l.name, 'listener', index);
  const what = `listener ${name}`;
  const sa = l.address?.socketAddress;
  if (!sa) return { name, entries: [], skipped: 'no socket address' };
  if (known('envoy.config.core.v3.TrafficDirection', l.trafficDirection, what, 'traffic_direction') === TRAFFIC_INBOUND)
    return { name, entries: [], skipped: 'inbound listener' };
  const addr: string = sa.address ?? '';
  if (isIP(addr) === 0) throw new XdsResourceError(`${what}: address "${addr}" is not an IP literal`);
  const port = checkPort(sa.portValue, what);
  const socketProtocol = known(
    'envoy.config.core.v3.SocketAddress.Protocol',
    sa.protocol,
    what,
    'socket_address.protocol',
  );
  const wildcard = addr === '0.0.0.0' || addr === '::';
  const entries: XListenerEntry[] = [];
  const chains = [...(l.filterChains ?? [])];
  if (l.defaultFilterChain) chains.push(l.defaultFilterChain);
  chains.forEach((chain: M, i: number) => {
    const t = chainTarget(chain, `${what} chain ${chain.name || i}`);
    if (!t) return;
    const m = chain.filterChainMatch;
    const cport = m?.destinationPort ? checkPort(m.destinationPort.value, `${what}: destination_port`) : port;
    const addresses = wildcard ? hostPrefixes(m) : [addr];
    const protocol: Protocol = socketProtocol === SOCKET_UDP ? 'udp' : t.protocol;
    entries.push({ addresses, port: cport, protocol, target: t.target });
  });
  return { name, entries };
}

function routeClusters(action: M, what: string): WeightedCluster[] | undefined {
  if (!action) return undefined;
  if (action.cluster) return [{ cluster: action.cluster, weight: 1 }];
  if (action.weightedClusters) {
    const list = (action.weightedClusters.clusters ?? []).map((c: M) => ({
      name: c.name ?? '',
      weight: c.weight ? c.weight.value : 0,
    }));
    return positiveWeights(list, what);
  }
  return undefined; // cluster_header: chosen per request, nothing to program at connect time
}

function sameTargets(a: WeightedCluster[] | undefined, b: WeightedCluster[] | undefined): boolean {
  return (
    a !== undefined &&
    b !== undefined &&
    a.length === b.length &&
    a.every((x, i) => x.cluster === b[i]?.cluster && x.weight === b[i]?.weight)
  );
}

/**
 * A virtual host: one L4 destination when every route leads to the same place; otherwise its routes for the kernel
 * (`http`, checked against the kernel limits: an over-limit table is NACKed) and the catch-all as the L4 default.
 * Whatever the kernel does not do is listed in `unenforced`.
 */
function virtualHost(vh: M, index: number, what: string): XVirtualHost {
  const t = xdsTypes();
  const name: string = vh.name || `virtual_hosts[${index}]`;
  const vwhat = `${what} vhost ${name}`;
  const routes: M[] = vh.routes ?? [];
  const targets = routes.map((r: M, i: number) => routeClusters(r.route, `${vwhat} route ${r.name || i}`));
  const out: XVirtualHost = { name, domains: [...(vh.domains ?? [])], unenforced: [] };
  const vhostFeatures = unenforcedFeatures(vh);
  if (vhostFeatures.length > 0) {
    const { routes: _, ...detail } = toPlain(t.root.lookupType('envoy.config.route.v3.VirtualHost'), vh);
    out.unenforced.push({ description: `${vwhat}: not enforced: ${vhostFeatures.join(', ')}`, detail });
  }
  const note = (r: M, i: number, text: string) =>
    out.unenforced.push({
      description: `${vwhat} route ${r.name || i}: ${text}`,
      detail: toPlain(t.root.lookupType('envoy.config.route.v3.Route'), r),
    });
  const noteFeatures = (r: M, i: number, prefix: string) => {
    const features = unenforcedFeatures(r, r.route);
    if (features.length > 0) note(r, i, `${prefix}not enforced: ${features.join(', ')}`);
  };

  // a programmable route that hashes on a header or cookie needs its request seen: no collapsing to one L4 destination
  const hashing = routes.map((r: M, i: number) =>
    targets[i] && typeof routeMatch(r.match) !== 'string' ? routeHashPolicy(r.route).policy : undefined,
  );
  if (targets.every((x) => sameTargets(x, targets[0])) && hashing.every((p) => !p)) {
    out.l4 = targets[0]; // every route goes to the same place: the vhost is exactly one L4 destination
    routes.forEach((r, i) => {
      noteFeatures(r, i, '');
    });
    return out;
  }
  const http: HttpRoute[] = [];
  routes.forEach((r: M, i: number) => {
    const clusters = targets[i];
    const match = clusters ? routeMatch(r.match) : actionReason(r);
    if (typeof match === 'string' || !clusters) {
      note(r, i, `not programmed (${match})`);
      return;
    }
    const hashPolicy = hashing[i];
    http.push({ name: r.name || `routes[${i}]`, match, clusters, ...(hashPolicy ? { hashPolicy } : {}) });
    noteFeatures(r, i, 'programmed; ');
    const catchAll = !match.path && match.method === undefined && match.headers.length === 0;
    if (catchAll && !out.l4) out.l4 = clusters;
  });
  // what is programmable is one destination
  if (http.every((r) => sameTargets(r.clusters, out.l4) && !r.hashPolicy)) return out;
  out.http = { name, domains: ['*'], routes: http };
  const problems = virtualHostProblems([out.http]).map((p) => {
    const key = p.key
      .replace(/^virtual_hosts(\[0\]\.)?/, '')
      .replace(/^routes\[(\d+)\]\./, (_, k) => `route ${http[Number(k)]?.name}: `);
    return key ? `${key}: ${p.problem}` : p.problem;
  });
  if (problems.length > 0) throw new XdsResourceError(`${vwhat}: ${problems.join('; ')}`);
  return out;
}

function routeConfigFrom(rc: M, what: string): XRouteConfig {
  return { name: rc.name ?? '', vhosts: (rc.virtualHosts ?? []).map((vh: M, i: number) => virtualHost(vh, i, what)) };
}

export function decodeRouteConfig(bytes: Uint8Array, index: number): XRouteConfig {
  const rc: M = decodeAs(xdsTypes().RouteConfiguration, bytes, `route configuration #${index}`);
  const name = checkName(rc.name, 'route configuration', index);
  return routeConfigFrom(rc, `route configuration ${name}`);
}

/** The resource decoder of each subscribed type URL (shared by the SotW and delta protocols). */
export const DECODERS = {
  [TYPE.cluster]: decodeCluster,
  [TYPE.endpoint]: decodeLoadAssignment,
  [TYPE.listener]: decodeListener,
  [TYPE.route]: decodeRouteConfig,
} as const;
