/**
 * ADS client (xDS v3) for istiod or any Envoy-compatible control plane, state of the world or delta
 * (`[xds] mode`, sotw.ts / delta.ts).
 *
 * One bidi stream carries CDS, EDS, LDS and RDS. Responses that arrive together are one batch: each is decoded
 * (a bad one is NACKed alone), the resources that changed are staged into the model builder, which derives only
 * what depends on them; the resulting ModelChange goes to the daemon. Only when it is applied are the responses
 * ACKed and the staged state kept; anything invalid or refused is NACKed with the reason, the builder rolls back
 * and the maps keep the last good config. When the stream drops, nothing is withdrawn: traffic follows the last
 * applied config until a new stream delivers changes.
 */

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import { VERSION } from '../../contracts/package.js';
import type { ModelChange } from '../../model/change.js';
import { Slicer } from '../../runtime/slicer.js';
import { Backoff } from './backoff.js';
import { buildNode, type XdsConfig } from './config.js';
import { DeltaProtocol } from './delta.js';
import { type Lookup, resolveAll, systemLookup } from './dns.js';
import { isEmptyChange, XdsModelBuilder } from './model-builder.js';
import type { Protocol, Received } from './protocol.js';
import { shortName } from './protocol.js';
import { TYPE, xdsTypes } from './protos.js';
import { XdsResourceError } from './resources.js';
import { SotwProtocol } from './sotw.js';

export type { XdsConfig } from './config.js';
export { parseXdsConfig } from './config.js';

/** Larger responses fail the stream with RESOURCE_EXHAUSTED (logged) rather than exhaust the daemon's memory. */
export const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** HTTP/2 receive window of the ADS connection (see newChannel). */
const FLOW_CONTROL_WINDOW = 16 * 1024 * 1024;

export interface XdsClientOptions {
  /** DNS for STRICT_DNS clusters; tests inject a fake. */
  lookup?: Lookup;
  dnsRefreshMs?: number;
}

type Events = {
  connected: [boolean];
  push: [typeUrl: string, version: string];
  nack: [typeUrl: string, message: string];
};

/** "clusters a, b; listeners c" — what a refused change was about, for the NACK (at most 5 names of each). */
function describeChange(c: ModelChange): string {
  const list = (what: string, names: string[]) =>
    names.length === 0
      ? []
      : [`${what} ${names.slice(0, 5).join(', ')}${names.length > 5 ? ` (+${names.length - 5} more)` : ''}`];
  return [
    ...list('clusters', [...c.upsertClusters.map((x) => x.name), ...c.removeClusters]),
    ...list('listeners', [...c.upsertListeners.map((x) => x.name), ...c.removeListeners]),
  ].join('; ');
}

export class XdsClient extends EventEmitter<Events> {
  private readonly log: pino.Logger;
  private readonly backoff: Backoff;
  private readonly lookup: Lookup;
  private readonly dnsRefreshMs: number;
  private readonly proto: Protocol;
  private client?: grpc.Client;
  private call?: grpc.ClientDuplexStream<Uint8Array, Buffer>;
  private stopped = true;
  private isConnected = false;
  private retryTimer?: NodeJS.Timeout;
  private dnsTimer?: NodeJS.Timeout;

  /** The xDS model (decoded resources, what the daemon holds, dependencies), committed or staged. */
  private readonly builder = new XdsModelBuilder();
  /** Current EDS/RDS subscriptions; CDS/LDS are wildcard. */
  private readonly subs = new Map<string, string[]>([
    [TYPE.endpoint, []],
    [TYPE.route, []],
  ]);

  private queue: Received[] = [];
  private chain: Promise<void> = Promise.resolve();
  private draining = false;
  private counters = { pushes: 0, nacks: 0, malformed: 0, applies: 0 };
  private lastError?: string;
  /** Duration of the last successful response → apply done, for the bench and debug logs. */
  lastApplyMs = 0;

  constructor(
    private readonly config: XdsConfig,
    private readonly apply: (change: ModelChange) => Promise<void>,
    logger: pino.Logger,
    opts: XdsClientOptions = {},
  ) {
    super();
    this.log = logger.child({ component: 'xds' });
    this.backoff = new Backoff(config.initialBackoffMs, config.maxBackoffMs);
    this.lookup = opts.lookup ?? systemLookup;
    this.dnsRefreshMs = opts.dnsRefreshMs ?? 30_000;
    this.proto = config.mode === 'delta' ? new DeltaProtocol() : new SotwProtocol();
    xdsTypes(); // fail at start-up, not on the first response, if proto/ is missing
  }

  get connected(): boolean {
    return this.isConnected;
  }

  stats(): { pushes: number; nacks: number; applies: number; connected: boolean; lastError?: string } {
    const s: { pushes: number; nacks: number; applies: number; connected: boolean; lastError?: string } = {
      pushes: this.counters.pushes,
      nacks: this.counters.nacks,
      applies: this.counters.applies,
      connected: this.isConnected,
    };
    if (this.lastError !== undefined) s.lastError = this.lastError;
    return s;
  }

  /** For `kmeshctl dump`: the protocol, and the listeners another one on the same address and port shadows. */
  dump(): { mode: string; shadowedListeners: string[] } {
    return { mode: this.proto.mode, shadowedListeners: this.builder.shadowed() };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
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

  /**
   * A fresh channel for every stream attempt: a grpc-js channel that failed to connect waits out its own
   * reconnect backoff (1 s growing to 120 s) before trying again, which would stack on ours and break
   * max_backoff_ms. A new channel connects at once, so the delay between attempts is exactly ours.
   */
  private newChannel(): grpc.Client {
    this.client?.close();
    return new grpc.Client(this.config.address, this.credentials(), {
      'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
      // HTTP/2's default window (64 KiB) makes a 400 KB SotW EDS resend wait for six WINDOW_UPDATE round trips
      // between the processes (a full push of 1,000 clusters for ~20); with this one it flows at once. What the
      // window lets in unread is bounded by it; the client reads every frame as it comes.
      'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
      'grpc.max_send_message_length': 4 * 1024 * 1024,
      // Keepalive notices a control plane that vanished without a FIN (VM network cut) within ~40 s.
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.primary_user_agent': `kmesh/${VERSION}`,
    });
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
    if (v) this.log.info({ address: this.config.address, mode: this.proto.mode }, 'xds stream up');
    else
      this.log.warn(
        { address: this.config.address, lastError: this.lastError },
        'xds stream down; keeping the last applied config',
      );
    this.emit('connected', v);
  }

  private openStream(): void {
    if (this.stopped) return;
    this.queue = [];
    let client: grpc.Client;
    try {
      client = this.newChannel();
    } catch (e) {
      this.retry(`cannot create the channel: ${(e as Error).message}`);
      return;
    }
    this.client = client;
    const call = client.makeBidiStreamRequest<Uint8Array, Buffer>(
      this.proto.method,
      (req) => Buffer.from(req.buffer, req.byteOffset, req.byteLength), // a view: requests are not reused
      (buf) => buf, // decoded by us, so a malformed message is logged instead of killing the stream
      this.metadata(),
    );
    this.call = call;
    const mine = () => this.call === call;
    call.on('metadata', () => mine() && this.setConnected(true));
    this.watchReady(client, mine);
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
      this.retry(why);
    };
    call.on('error', (e: grpc.ServiceError) => {
      const hint =
        e.code === grpc.status.RESOURCE_EXHAUSTED
          ? ` (responses are limited to ${MAX_RESPONSE_BYTES} bytes)`
          : e.code === grpc.status.UNIMPLEMENTED && this.proto.mode === 'delta'
            ? ' (the server does not speak delta xDS: set [xds] mode = "sotw")'
            : '';
      down(`${grpc.status[e.code] ?? e.code}: ${e.details || e.message}${hint}`);
    });
    call.on('end', () => down('stream ended by the server'));
    const node = buildNode(this.config, VERSION);
    for (const req of this.proto.open(node, this.subs)) call.write(req);
  }

  /**
   * Up as soon as the channel is: a server that has nothing to send after a re-subscribe (all versions current)
   * sends no headers either, and the stream must not look down for that.
   */
  private watchReady(client: grpc.Client, mine: () => boolean): void {
    const channel = client.getChannel();
    const watch = () => {
      if (!mine()) return;
      const state = channel.getConnectivityState(true);
      if (state === grpc.connectivityState.READY) this.setConnected(true);
      else if (state !== grpc.connectivityState.SHUTDOWN)
        channel.watchConnectivityState(state, Date.now() + 3_600_000, watch);
    };
    watch();
  }

  private retry(why: string): void {
    if (this.stopped) return;
    const delay = this.backoff.next();
    this.log.warn({ reason: why, retryInMs: delay }, 'xds stream closed');
    this.retryTimer = setTimeout(() => this.openStream(), delay);
  }

  private send(req: Uint8Array): void {
    this.call?.write(req);
  }

  private receive(buf: Buffer): void {
    let r: Received;
    try {
      r = this.proto.decode(buf, performance.now());
    } catch (e) {
      // No type URL or nonce to NACK against: log loudly and wait for the next response.
      this.counters.malformed++;
      this.lastError = `malformed response (${buf.length} bytes): ${(e as Error).message}`;
      this.log.error({ err: this.lastError }, 'xds: dropped malformed response');
      return;
    }
    this.proto.enqueue(this.queue, r);
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

  private names(typeUrl: string): string[] {
    return this.subs.get(typeUrl) ?? [];
  }

  private nack(r: Received, message: string): void {
    this.counters.nacks++;
    this.lastError = `${shortName(r.typeUrl)} NACK: ${message}`;
    this.log.warn({ typeUrl: r.typeUrl, version: r.version, nonce: r.nonce, err: message }, 'xds: NACK');
    this.send(this.proto.nack(r, message, this.names(r.typeUrl)));
    this.emit('nack', r.typeUrl, message);
  }

  /** Stages every response of the batch; one build and one apply for all of them. */
  private async processBatch(batch: Received[]): Promise<void> {
    const accepted: Received[] = [];
    const note = (msg: string) => this.log.debug({ note: msg }, 'xds');
    const slice = new Slicer();
    for (const r of batch) {
      try {
        await this.proto.stage(r, this.builder, note, slice);
        accepted.push(r);
      } catch (e) {
        // Anything thrown while reading a control plane's bytes is that response's fault: NACK, never crash.
        this.nack(r, e instanceof XdsResourceError ? e.message : `cannot decode: ${(e as Error).message}`);
      }
    }
    if (accepted.length === 0) return;
    const refuse = (msg: string) => {
      this.builder.rollback();
      this.proto.abort();
      for (const r of accepted) this.nack(r, msg);
    };

    let result: ReturnType<XdsModelBuilder['build']>;
    try {
      await slice.next(); // decoding, building and the daemon's merge each get a turn of their own when large
      const hosts = this.builder.dnsHosts();
      if (hosts.some((h) => !this.builder.dnsTable.has(h))) {
        const { table } = await resolveAll(hosts, this.builder.dnsTable, this.lookup, (h, err) =>
          this.log.warn({ host: h, err: err.message }, 'xds: DNS lookup failed'),
        );
        this.builder.setDns(table);
      }
      result = this.builder.build();
    } catch (e) {
      refuse(e instanceof XdsResourceError ? e.message : `cannot convert: ${(e as Error).message}`);
      return;
    }
    await slice.next();
    if (this.stopped) {
      this.builder.rollback();
      this.proto.abort();
      return;
    }
    // Byte-identical resends, versions already held: nothing for the daemon, just ACK.
    if (!isEmptyChange(result.change)) {
      try {
        await this.apply(result.change);
        this.counters.applies++;
      } catch (e) {
        refuse(`rejected by the daemon (${describeChange(result.change)}): ${(e as Error).message}`);
        return;
      }
    }
    const now = performance.now();
    this.builder.commit();
    this.proto.commit();
    this.proto.forget(TYPE.endpoint, result.pruned.assignments);
    this.proto.forget(TYPE.route, result.pruned.routes);
    this.lastApplyMs = now - Math.min(...accepted.map((r) => r.receivedAt));
    for (const note of result.notes) this.log.debug({ note }, 'xds conversion');
    for (const msg of result.shadowed) this.log.warn({ shadowed: msg }, 'xds: listener shadowed by another');
    if (result.warming.length > 0)
      this.log.debug({ warming: result.warming.slice(0, 20), count: result.warming.length }, 'xds: listeners warming');
    this.accepted(accepted, now);
    if (result.subscriptionsChanged) {
      this.resubscribe(TYPE.endpoint, this.builder.edsNames());
      this.resubscribe(TYPE.route, this.builder.rdsNames());
    }
  }

  /** ACKs what was applied (or found unchanged), logs it and tells listeners. */
  private accepted(list: Received[], now: number): void {
    for (const r of list) {
      this.send(this.proto.ack(r, this.names(r.typeUrl)));
      this.counters.pushes++;
      this.log.info(
        {
          type: shortName(r.typeUrl),
          version: r.version,
          resources: r.count,
          ms: Number((now - r.receivedAt).toFixed(2)),
          // Epoch ms with sub-ms precision, so a benchmark can time a push that spans several responses.
          arrivedAt: Number((performance.timeOrigin + r.receivedAt).toFixed(3)),
          doneAt: Number((performance.timeOrigin + now).toFixed(3)),
        },
        'xds: applied',
      );
      this.emit('push', r.typeUrl, r.version);
    }
  }

  /** Follows the EDS/RDS names the clusters/listeners refer to. */
  private resubscribe(typeUrl: string, names: string[]): void {
    const cur = this.names(typeUrl);
    if (cur.length === names.length && cur.every((n, i) => n === names[i])) return;
    this.subs.set(typeUrl, names);
    this.send(this.proto.resubscribe(typeUrl, cur, names));
  }

  private refreshDns(): void {
    if (this.stopped || this.builder.dnsHosts().length === 0) return;
    this.chain = this.chain
      .then(async () => {
        const { table, changed } = await resolveAll(
          this.builder.dnsHosts(),
          this.builder.dnsTable,
          this.lookup,
          (h, err) => this.log.warn({ host: h, err: err.message }, 'xds: DNS refresh failed'),
        );
        if (!changed || this.stopped) return;
        this.builder.setDns(table);
        try {
          const { change } = this.builder.build();
          if (!isEmptyChange(change)) await this.apply(change);
          this.builder.commit();
        } catch (e) {
          this.builder.rollback();
          throw e;
        }
      })
      .catch((e) => this.log.warn({ err: (e as Error).message }, 'xds: DNS refresh not applied'));
  }
}
