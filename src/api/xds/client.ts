/**
 * ADS client (xDS v3, state of the world) for istiod or any Envoy-compatible control plane.
 *
 * One bidi StreamAggregatedResources stream carries CDS, EDS, LDS and RDS. Every response is decoded, validated,
 * staged on a copy of the state, converted to a MeshModel and handed to `apply`; only when apply succeeds is the
 * response ACKed and the staged state kept. Anything invalid (or refused by apply) is NACKed with the reason and
 * the previous version, and the maps keep the last good config. When the stream drops, nothing is withdrawn:
 * traffic follows the last applied model until a new stream delivers a new one.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import { VERSION } from '../../contracts/package.js';
import type { MeshModel } from '../../model/types.js';
import { Backoff } from './backoff.js';
import { buildNode, type XdsConfig } from './config.js';
import { type Conversion, convert, emptyState, type XdsState } from './convert.js';
import {
  type DecodedResponse,
  decodeCluster,
  decodeListener,
  decodeLoadAssignment,
  decodeResponse,
  decodeRouteConfig,
  ResourceCache,
} from './decode.js';
import { type Lookup, resolveAll, systemLookup } from './dns.js';
import { ADS_METHOD, TYPE, xdsTypes } from './protos.js';
import {
  type XCluster,
  XdsResourceError,
  type XListener,
  type XLoadAssignment,
  type XRouteConfig,
} from './resources.js';

export type { XdsConfig } from './config.js';
export { parseXdsConfig } from './config.js';

/** Subscription order Envoy uses: clusters before their endpoints, listeners before their routes. */
const TYPES = [TYPE.cluster, TYPE.endpoint, TYPE.listener, TYPE.route] as const;
type XdsType = (typeof TYPES)[number];
const SHORT: Record<XdsType, string> = {
  [TYPE.cluster]: 'CDS',
  [TYPE.endpoint]: 'EDS',
  [TYPE.listener]: 'LDS',
  [TYPE.route]: 'RDS',
};

/** Larger responses fail the stream with RESOURCE_EXHAUSTED (logged) rather than exhaust the daemon's memory. */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;
const GRPC_INVALID_ARGUMENT = 3;

export interface XdsClientOptions {
  /** DNS for STRICT_DNS clusters; tests inject a fake. */
  lookup?: Lookup;
  dnsRefreshMs?: number;
}

interface Pending {
  resp: DecodedResponse;
  receivedAt: number;
}

type Events = {
  connected: [boolean];
  push: [typeUrl: string, version: string];
  nack: [typeUrl: string, message: string];
};

export class XdsClient extends EventEmitter<Events> {
  private readonly log: pino.Logger;
  private readonly backoff: Backoff;
  private readonly lookup: Lookup;
  private readonly dnsRefreshMs: number;
  private client?: grpc.Client;
  private call?: grpc.ClientDuplexStream<Uint8Array, Buffer>;
  private stopped = true;
  private isConnected = false;
  private retryTimer?: NodeJS.Timeout;
  private dnsTimer?: NodeJS.Timeout;

  // Committed (ACKed and applied) state.
  private state: XdsState = emptyState();
  private dns = new Map<string, string[]>();
  /** False until the first apply: an empty first push must still reach the daemon once. */
  private appliedOnce = false;
  private readonly caches = {
    clusters: new ResourceCache<XCluster>(),
    listeners: new ResourceCache<XListener>(),
    assignments: new ResourceCache<XLoadAssignment>(),
    routes: new ResourceCache<XRouteConfig>(),
  };
  private readonly versions = new Map<string, string>();
  /** Per-stream: nonce of the last response seen per type (cleared on reconnect). */
  private nonces = new Map<string, string>();
  /** Current EDS/RDS subscriptions; CDS/LDS are wildcard. */
  private readonly subs = new Map<string, string[]>([
    [TYPE.endpoint, []],
    [TYPE.route, []],
  ]);

  private queue: Pending[] = [];
  private chain: Promise<void> = Promise.resolve();
  private draining = false;
  private counters = { pushes: 0, nacks: 0, malformed: 0 };
  private lastError?: string;
  /** Duration of the last successful response → apply done, for the bench and debug logs. */
  lastApplyMs = 0;

  constructor(
    private readonly config: XdsConfig,
    private readonly apply: (model: MeshModel) => Promise<void>,
    logger: pino.Logger,
    opts: XdsClientOptions = {},
  ) {
    super();
    this.log = logger.child({ component: 'xds' });
    this.backoff = new Backoff(config.initialBackoffMs, config.maxBackoffMs);
    this.lookup = opts.lookup ?? systemLookup;
    this.dnsRefreshMs = opts.dnsRefreshMs ?? 30_000;
    xdsTypes(); // fail at start-up, not on the first response, if proto/ is missing
  }

  get connected(): boolean {
    return this.isConnected;
  }

  stats(): { pushes: number; nacks: number; connected: boolean; lastError?: string } {
    const s: { pushes: number; nacks: number; connected: boolean; lastError?: string } = {
      pushes: this.counters.pushes,
      nacks: this.counters.nacks,
      connected: this.isConnected,
    };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    return s;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.client = new grpc.Client(this.config.address, this.credentials(), {
      'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
      'grpc.max_send_message_length': 4 * 1024 * 1024,
      // Keepalive notices a control plane that vanished without a FIN (VM network cut) within ~40 s.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.primary_user_agent': `kmesh/${VERSION}`,
    });
    this.openStream();
    this.dnsTimer = setInterval(() => this.refreshDns(), this.dnsRefreshMs);
    this.dnsTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.dnsTimer);
    const call = this.call;
    this.call = undefined;
    call?.cancel();
    this.setConnected(false);
    this.queue = [];
    await this.chain.catch(() => {});
    this.client?.close();
    this.client = undefined;
  }

  private credentials(): grpc.ChannelCredentials {
    if (!this.config.tls) return grpc.credentials.createInsecure();
    const read = (f?: string) => (f ? readFileSync(f) : null);
    return grpc.credentials.createSsl(read(this.config.caFile), read(this.config.keyFile), read(this.config.certFile));
  }

  private metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.config.tokenFile) {
      try {
        const token = readFileSync(this.config.tokenFile, 'utf8').trim();
        if (token) md.set('authorization', `Bearer ${token}`);
      } catch (e) {
        this.log.warn(
          { err: (e as Error).message, file: this.config.tokenFile },
          'xds token file unreadable; connecting without a token',
        );
      }
    }
    return md;
  }

  private setConnected(v: boolean): void {
    if (this.isConnected === v) return;
    this.isConnected = v;
    if (v) this.log.info({ address: this.config.address }, 'xds stream up');
    else
      this.log.warn(
        { address: this.config.address, lastError: this.lastError },
        'xds stream down; keeping the last applied config',
      );
    this.emit('connected', v);
  }

  private openStream(): void {
    if (this.stopped || !this.client) return;
    this.nonces = new Map();
    this.queue = [];
    const call = this.client.makeBidiStreamRequest<Uint8Array, Buffer>(
      ADS_METHOD,
      (req) => Buffer.from(req),
      (buf) => buf, // decoded by us, so a malformed message is logged instead of killing the stream
      this.metadata(),
    );
    this.call = call;
    const mine = () => this.call === call;
    call.on('metadata', () => mine() && this.setConnected(true));
    call.on('data', (buf: Buffer) => {
      if (!mine()) return;
      this.setConnected(true);
      this.backoff.reset();
      this.receive(buf);
    });
    const down = (why: string) => {
      if (!mine()) return;
      this.call = undefined;
      this.lastError = why;
      this.setConnected(false);
      if (this.stopped) return;
      const delay = this.backoff.next();
      this.log.warn({ reason: why, retryInMs: delay }, 'xds stream closed');
      this.retryTimer = setTimeout(() => this.openStream(), delay);
    };
    call.on('error', (e: grpc.ServiceError) => {
      const hint =
        e.code === grpc.status.RESOURCE_EXHAUSTED ? ` (responses are limited to ${MAX_RESPONSE_BYTES} bytes)` : '';
      down(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}${hint}`);
    });
    call.on('end', () => down('stream ended by the server'));
    // Re-subscribe with the last ACKed versions so a server that kept its state need not resend everything.
    const node = buildNode(this.config, VERSION);
    let first = true;
    for (const t of TYPES) {
      const names = this.subs.get(t);
      if (names !== undefined && names.length === 0) continue; // nothing to ask for yet (EDS/RDS come after CDS/LDS)
      this.send({
        typeUrl: t,
        versionInfo: this.versions.get(t) ?? '',
        resourceNames: names ?? [],
        ...(first ? { node } : {}),
      });
      first = false;
    }
  }

  private send(req: Record<string, unknown>): void {
    const call = this.call;
    if (!call) return;
    const t = xdsTypes();
    call.write(t.DiscoveryRequest.encode(t.DiscoveryRequest.fromObject(req)).finish());
  }

  private receive(buf: Buffer): void {
    const receivedAt = performance.now();
    let resp: DecodedResponse;
    try {
      resp = decodeResponse(buf);
    } catch (e) {
      // No type URL or nonce to NACK against: log loudly and wait for the next response.
      this.counters.malformed++;
      this.lastError = `malformed DiscoveryResponse (${buf.length} bytes): ${(e as Error).message}`;
      this.log.error({ err: this.lastError }, 'xds: dropped malformed response');
      return;
    }
    this.nonces.set(resp.typeUrl, resp.nonce);
    // Flood control: a newer response of a type supersedes a queued one (SotW: only the latest nonce matters).
    const i = this.queue.findIndex((p) => p.resp.typeUrl === resp.typeUrl);
    if (i >= 0) this.queue.splice(i, 1);
    this.queue.push({ resp, receivedAt });
    if (!this.draining) {
      this.draining = true;
      // setImmediate lets frames already read off the socket join this batch (CDS+EDS+LDS arrive together).
      setImmediate(() => {
        this.chain = this.chain
          .then(() => this.drain())
          .catch((e) => this.log.error({ err: e }, 'xds: internal error'));
      });
    }
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.stopped) {
        const batch = this.queue;
        this.queue = [];
        await this.processBatch(batch);
      }
    } finally {
      this.draining = false;
    }
  }

  private nack(resp: DecodedResponse, message: string): void {
    this.counters.nacks++;
    this.lastError = `${SHORT[resp.typeUrl as XdsType] ?? resp.typeUrl} NACK: ${message}`;
    this.log.warn({ typeUrl: resp.typeUrl, version: resp.versionInfo, nonce: resp.nonce, err: message }, 'xds: NACK');
    this.send({
      typeUrl: resp.typeUrl,
      versionInfo: this.versions.get(resp.typeUrl) ?? '',
      responseNonce: resp.nonce,
      resourceNames: this.subs.get(resp.typeUrl) ?? [],
      errorDetail: { code: GRPC_INVALID_ARGUMENT, message },
    });
    this.emit('nack', resp.typeUrl, message);
  }

  private ack(resp: DecodedResponse): void {
    this.versions.set(resp.typeUrl, resp.versionInfo);
    this.send({
      typeUrl: resp.typeUrl,
      versionInfo: resp.versionInfo,
      responseNonce: resp.nonce,
      resourceNames: this.subs.get(resp.typeUrl) ?? [],
    });
  }

  /** Stages each response on a copy of the state; one conversion and one apply for the whole batch. */
  private async processBatch(batch: Pending[]): Promise<void> {
    const staged: XdsState = { ...this.state };
    const accepted: Pending[] = [];
    const caches: Array<() => void> = [];
    let changed = false;
    for (const p of batch) {
      const { resp } = p;
      try {
        switch (resp.typeUrl) {
          case TYPE.cluster: {
            const { resources, cache } = this.caches.clusters.decode(resp, decodeCluster);
            changed ||= !sameEntries(staged.clusters, resources);
            staged.clusters = resources;
            caches.push(() => this.caches.clusters.commit(cache, this.state.clusters, false));
            break;
          }
          case TYPE.listener: {
            const { resources, cache } = this.caches.listeners.decode(resp, decodeListener);
            changed ||= !sameEntries(staged.listeners, resources);
            staged.listeners = resources;
            caches.push(() => this.caches.listeners.commit(cache, this.state.listeners, false));
            break;
          }
          case TYPE.endpoint: {
            // SotW EDS/RDS: a response carries the resources it names; others keep their last value.
            const { resources, cache } = this.caches.assignments.decode(resp, decodeLoadAssignment);
            changed ||= [...resources].some(([n, r]) => staged.assignments.get(n) !== r);
            staged.assignments = new Map([...staged.assignments, ...resources]);
            caches.push(() => this.caches.assignments.commit(cache, this.state.assignments, true));
            break;
          }
          case TYPE.route: {
            const { resources, cache } = this.caches.routes.decode(resp, decodeRouteConfig);
            changed ||= [...resources].some(([n, r]) => staged.routes.get(n) !== r);
            staged.routes = new Map([...staged.routes, ...resources]);
            caches.push(() => this.caches.routes.commit(cache, this.state.routes, true));
            break;
          }
          default:
            throw new XdsResourceError(`unknown or unsubscribed type URL "${resp.typeUrl}"`);
        }
        accepted.push(p);
      } catch (e) {
        // Anything thrown while reading a control plane's bytes is that response's fault: NACK, never crash.
        this.nack(resp, e instanceof XdsResourceError ? e.message : `cannot decode: ${(e as Error).message}`);
      }
    }
    if (accepted.length === 0) return;
    // Every resource byte-identical to what is applied (a periodic resend, a re-subscribe): just ACK.
    if (!changed && this.appliedOnce) {
      this.accepted(accepted, performance.now());
      return;
    }

    let conv: Conversion;
    let dns = this.dns;
    try {
      conv = convert(staged, dns);
      if (conv.dnsHosts.some((h) => !dns.has(h))) {
        dns = (
          await resolveAll(conv.dnsHosts, dns, this.lookup, (h, err) =>
            this.log.warn({ host: h, err: err.message }, 'xds: DNS lookup failed'),
          )
        ).table;
        conv = convert(staged, dns);
      }
    } catch (e) {
      const msg = e instanceof XdsResourceError ? e.message : `cannot convert: ${(e as Error).message}`;
      for (const p of accepted) this.nack(p.resp, msg);
      return;
    }
    if (this.stopped) return;

    try {
      await this.apply(conv.model);
    } catch (e) {
      const msg = `rejected by the daemon: ${(e as Error).message}`;
      for (const p of accepted) this.nack(p.resp, msg);
      return;
    }
    this.appliedOnce = true;
    const now = performance.now();
    this.state = staged;
    for (const commit of caches) commit();
    this.dns = dns;
    this.lastApplyMs = now - Math.min(...accepted.map((p) => p.receivedAt));
    for (const note of conv.notes) this.log.debug({ note }, 'xds conversion');
    if (conv.warming.length > 0)
      this.log.debug({ warming: conv.warming.slice(0, 20), count: conv.warming.length }, 'xds: listeners warming');
    this.accepted(accepted, now);
    this.resubscribe(TYPE.endpoint, conv.edsNames);
    this.resubscribe(TYPE.route, conv.rdsNames);
  }

  /** ACKs what was applied (or found unchanged), logs it and tells listeners. */
  private accepted(list: Pending[], now: number): void {
    for (const p of list) {
      this.ack(p.resp);
      this.counters.pushes++;
      this.log.info(
        {
          type: SHORT[p.resp.typeUrl as XdsType],
          version: p.resp.versionInfo,
          resources: p.resp.resources.length,
          ms: Number((now - p.receivedAt).toFixed(2)),
          // Epoch ms with sub-ms precision, so a benchmark can time a push that spans several responses.
          arrivedAt: Number((performance.timeOrigin + p.receivedAt).toFixed(3)),
          doneAt: Number((performance.timeOrigin + now).toFixed(3)),
        },
        'xds: applied',
      );
      this.emit('push', p.resp.typeUrl, p.resp.versionInfo);
    }
  }

  /** Updates EDS/RDS subscriptions when the clusters/listeners referencing them changed; prunes dropped ones. */
  private resubscribe(type: typeof TYPE.endpoint | typeof TYPE.route, names: string[]): void {
    const cur = this.subs.get(type) ?? [];
    if (cur.length === names.length && cur.every((n, i) => n === names[i])) return;
    this.subs.set(type, names);
    const keep = new Set(names);
    const map = type === TYPE.endpoint ? this.state.assignments : this.state.routes;
    for (const k of [...map.keys()]) if (!keep.has(k)) map.delete(k);
    this.send({
      typeUrl: type,
      versionInfo: this.versions.get(type) ?? '',
      responseNonce: this.nonces.get(type) ?? '',
      resourceNames: names,
    });
  }

  private refreshDns(): void {
    if (this.stopped || this.dns.size === 0) return;
    this.chain = this.chain
      .then(async () => {
        const hosts = [...this.dns.keys()];
        const { table, changed } = await resolveAll(hosts, this.dns, this.lookup, (h, err) =>
          this.log.warn({ host: h, err: err.message }, 'xds: DNS refresh failed'),
        );
        if (!changed || this.stopped) return;
        await this.apply(convert(this.state, table).model);
        this.dns = table;
      })
      .catch((e) => this.log.warn({ err: (e as Error).message }, 'xds: DNS refresh not applied'));
  }
}

function sameEntries<T>(a: Map<string, T>, b: Map<string, T>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of b) if (a.get(k) !== v) return false;
  return true;
}
