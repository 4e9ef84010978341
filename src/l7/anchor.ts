/**
 * The anchor: the daemon's listener that L7 client connections are sent to by connect4.
 * The kernel completes the handshake and the programs move the request bytes to an
 * upstream socket; the anchor's side of the connection carries no data, only the
 * client's FIN or RST, which is passed on to the upstream here (and the upstream's to
 * the client). When the kernel found no pooled socket, the bytes do arrive here and are
 * spliced in user space to a socket connected now (the slow path).
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { BpfMap } from '../runtime/bpf-map.js';
import { CONN_STATE, l7Conn, tupleKey } from './layouts.js';

export interface AnchorMaps {
  conns: BpfMap;
  peers: BpfMap;
}

export interface AnchorHooks {
  /** Adopt sockets the kernel took from the pools now (called before a pair is looked up). */
  collectTaken(): void;
  /** A client arrived: a pooled socket was probably just taken. */
  accepted(): void;
  /** The endpoint of a pool, for the slow path. */
  endpointOfPool(poolId: number): { address: string; port: number } | undefined;
}

/**
 * Time left to upstream bytes the kernel redirected (queued to the client by a kernel work item)
 * before the client sees the upstream's FIN: a FIN first would make the client miss them.
 */
const FIN_DELAY_MS = 20;

interface Pair {
  client?: Socket;
  upstream?: Socket;
  upstreamKey?: Buffer;
  clientEnded: boolean;
  upstreamEnded: boolean;
}

function isReset(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === 'ECONNRESET';
}

function hardClose(socket: Socket | undefined, reset: boolean): void {
  if (!socket || socket.destroyed) return;
  if (reset && typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
  else socket.destroy();
}

export class Anchor {
  private server: Server | undefined;
  private closing = false;
  /** By the client's tuple (hex). */
  private readonly pairs = new Map<string, Pair>();
  /** Counted here: connections the daemon spliced itself, and connections closed because nothing could serve them. */
  readonly stats = { slowPathSpliced: 0, slowPathFailed: 0, accepted: 0 };

  constructor(
    private readonly maps: AnchorMaps,
    private readonly hooks: AnchorHooks,
    private readonly logger: Logger,
  ) {}

  /** Returns the address bound (the port the kernel chose for port 0). */
  async listen(address: string, port: number): Promise<{ address: string; port: number }> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.onAccept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address, port, backlog: 4096 }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.logger.error({ err: err.message }, 'L7 anchor listener'));
    this.server = server;
    const bound = server.address();
    return typeof bound === 'object' && bound ? { address: bound.address, port: bound.port } : { address, port };
  }

  get openPairs(): number {
    return this.pairs.size;
  }

  private pairOf(clientHex: string): Pair {
    let pair = this.pairs.get(clientHex);
    if (!pair) {
      pair = { clientEnded: false, upstreamEnded: false };
      this.pairs.set(clientHex, pair);
    }
    return pair;
  }

  private onAccept(client: Socket): void {
    this.stats.accepted++;
    this.hooks.accepted();
    const key = tupleKey(
      client.remoteAddress ?? '',
      client.remotePort ?? 0,
      client.localAddress ?? '',
      client.localPort ?? 0,
    );
    const hex = key.toString('hex');
    const pair = this.pairOf(hex);
    pair.client = client;
    client.on('data', (chunk) => this.onClientData(hex, key, chunk));
    client.on('end', () => {
      if (this.closing) return;
      pair.clientEnded = true;
      this.hooks.collectTaken();
      if (pair.upstream) pair.upstream.end();
      else if (!this.connState(key)) client.end(); // never routed: nothing to wait for
      this.maybeDone(hex, key);
    });
    client.on('error', (err) => hardClose(pair.upstream, isReset(err)));
    client.on('close', () => {
      hardClose(pair.upstream, false);
      this.forget(hex, key);
    });
    if (pair.upstreamEnded) setTimeout(() => client.end(), FIN_DELAY_MS);
  }

  private connState(key: Buffer) {
    const v = this.maps.conns.lookup(key);
    return v ? l7Conn.decode(v) : undefined;
  }

  /** A pooled socket the kernel gave to a client. */
  adoptUpstream(upstream: Socket, upstreamKey: Buffer): void {
    if (this.closing) {
      upstream.destroy();
      return;
    }
    const clientKey = this.maps.peers.lookup(upstreamKey);
    if (!clientKey) {
      upstream.destroy();
      return;
    }
    const hex = clientKey.toString('hex');
    const pair = this.pairOf(hex);
    pair.upstream = upstream;
    pair.upstreamKey = upstreamKey;
    const onEnd = () => {
      pair.upstreamEnded = true;
      if (pair.client) setTimeout(() => pair.client?.end(), FIN_DELAY_MS);
      this.maybeDone(hex, clientKey);
    };
    if (upstream.readableEnded) onEnd();
    else upstream.on('end', onEnd);
    upstream.on('error', (err) => hardClose(pair.client, isReset(err)));
    upstream.on('close', () => {
      if (!pair.upstreamEnded) hardClose(pair.client, false);
      this.maybeDone(hex, clientKey);
    });
    if (pair.clientEnded) upstream.end();
    if (upstream.destroyed) hardClose(pair.client, false);
  }

  private maybeDone(hex: string, clientKey: Buffer): void {
    const pair = this.pairs.get(hex);
    if (!pair) return;
    if ((pair.clientEnded && pair.upstreamEnded) || pair.upstream?.destroyed) {
      pair.client?.destroySoon();
      pair.upstream?.destroySoon();
    }
    if (pair.client?.destroyed && (pair.upstream === undefined || pair.upstream.destroyed)) this.forget(hex, clientKey);
  }

  private forget(hex: string, clientKey: Buffer): void {
    const pair = this.pairs.get(hex);
    if (!pair || this.closing) return;
    if (pair.upstream && !pair.upstream.destroyed) return;
    this.pairs.delete(hex);
    this.maps.conns.delete(clientKey);
    if (pair.upstreamKey) this.maps.peers.delete(pair.upstreamKey);
  }

  /** Bytes reach the anchor only on the slow path: splice them in user space. */
  private onClientData(hex: string, key: Buffer, chunk: Buffer): void {
    if (this.closing) return;
    const pair = this.pairOf(hex);
    const client = pair.client;
    if (!client || pair.upstream) return;
    const state = this.connState(key);
    const endpoint = state?.state === CONN_STATE.slow ? this.hooks.endpointOfPool(state.pool_id) : undefined;
    if (!endpoint) {
      this.stats.slowPathFailed++;
      client.destroy();
      return;
    }
    this.stats.slowPathSpliced++;
    client.pause();
    const upstream = connect({ host: endpoint.address, port: endpoint.port, allowHalfOpen: true, noDelay: true });
    pair.upstream = upstream;
    upstream.write(chunk);
    client.removeAllListeners('data');
    upstream.once('connect', () => {
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on('error', (err) => hardClose(client, isReset(err)));
    upstream.on('close', () => {
      hardClose(client, false);
      this.forget(hex, key);
    });
  }

  close(): Promise<void> {
    this.closing = true;
    const server = this.server;
    this.server = undefined;
    for (const pair of this.pairs.values()) {
      pair.client?.destroy();
      pair.upstream?.destroy();
    }
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }
}
