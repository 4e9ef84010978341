/**
 * The anchor: the daemon's listener that L7 client connections are sent to by connect4.
 * The kernel completes the handshake and the programs move the request bytes to an
 * upstream socket; the anchor's side of the connection carries no data, only the
 * client's FIN or RST, which is passed on to the upstream here (and the upstream's to
 * the client). When the kernel found no pooled socket, the bytes do arrive here and are
 * spliced in user space to a socket connected now (the slow path).
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { BpfMap } from '../runtime/bpf-map.js';
import { type DrainMarkers, MarkerScan } from './drain.js';
import { poolKey } from './encode.js';
import { CONN_STATE, l7Conn, tupleKey } from './layouts.js';
import { type ConnectFailure, dialEndpoint, socketFd } from './pool.js';

export interface AnchorMaps {
  conns: BpfMap;
  peers: BpfMap;
  /** kmesh_l7_clients: a client socket leaves it when it closes. */
  clients: BpfMap;
}

export interface AnchorHooks {
  /** Adopt sockets the kernel took from the pools now (called before a pair is looked up). */
  collectTaken(): void;
  /** A client arrived: a pooled socket was probably just taken. */
  accepted(): void;
  /** The endpoint of a pool, for the slow path. */
  endpointOfPool(poolId: number): { address: string; port: number; connectTimeoutMs?: number } | undefined;
  /** The cluster's max_pending_requests: slow-path connects it may have waiting at once. */
  maxPending(clusterId: number): number | undefined;
  /** A slow-path connect failed (outlier detection). */
  connectFailed(clusterId: number, endpoint: { address: string; port: number }, cause: ConnectFailure): void;
  /** A first request refused by max_pending_requests (the cluster's overflow count). */
  overflow(clusterId: number): void;
}

/** Envoy's answer to a request over a circuit breaker: the client sees a clean 503 at once, never a hang. */
const OVERFLOW_RESPONSE = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: 8\r\n' +
    'x-envoy-overloaded: true\r\nconnection: close\r\n\r\noverflow',
);
/** A request line's start: only HTTP gets the 503, anything else a plain close. */
const REQUEST_START = /^[A-Z]+ /;

/**
 * Without a drain marker (the client half-closed: its socket cannot send one; or no marker
 * socket), the time left to the client's backlog before the upstream's FIN is passed on.
 */
const FIN_DELAY_MS = 200;

interface Pair {
  client?: Socket;
  upstream?: Socket;
  upstreamKey?: Buffer;
  clientEnded: boolean;
  upstreamEnded: boolean;
  /** The upstream ended: looking for the drain marker in what the client sends. */
  draining?: MarkerScan;
  /** The upstream's FIN was passed on to the client. */
  drained: boolean;
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
  /**
   * Client data waiting for serve(): after a restart the anchor listens on a backlog full of connections that
   * took the slow path while no daemon ran, before the config has made the pools their state names.
   */
  private held: Array<() => void> | undefined = [];
  /** By the client's tuple (hex). */
  private readonly pairs = new Map<string, Pair>();
  /** Counted here: connections the daemon spliced itself, and connections closed because nothing could serve them. */
  readonly stats = {
    slowPathSpliced: 0,
    slowPathFailed: 0,
    slowPathOverflows: 0,
    accepted: 0,
    drainMarkers: 0,
    finFallbacks: 0,
  };
  /** Slow-path connects in progress per cluster id (max_pending_requests). */
  private readonly pending = new Map<number, number>();

  private markers: DrainMarkers | undefined;

  constructor(
    private readonly maps: AnchorMaps,
    private readonly hooks: AnchorHooks,
    private readonly logger: Logger,
  ) {}

  /** Upstream FINs wait for a drain marker from now on. */
  useMarkers(markers: DrainMarkers): void {
    this.markers = markers;
  }

  /**
   * Returns the address bound (the port the kernel chose for port 0). `fd`: a listening socket a previous
   * daemon left in systemd's store, listened on as it is (its backlog holds the connections that arrived
   * meanwhile).
   */
  async listen(address: string, port: number, fd?: number): Promise<{ address: string; port: number }> {
    const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => this.onAccept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(fd === undefined ? { host: address, port, backlog: 4096 } : { fd }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.logger.error({ err: err.message }, 'L7 anchor listener'));
    this.server = server;
    const bound = server.address();
    return typeof bound === 'object' && bound ? { address: bound.address, port: bound.port } : { address, port };
  }

  /** The pools exist: client data is handled from now on (and what waited, in arrival order). */
  serve(): void {
    const held = this.held;
    this.held = undefined;
    for (const resume of held ?? []) resume();
  }

  get openPairs(): number {
    return this.pairs.size;
  }

  /** The listening socket's fd (for systemd's store). */
  listenFd(): number | undefined {
    const fd = (this.server as unknown as { _handle?: { fd?: number } } | undefined)?._handle?.fd;
    return typeof fd === 'number' && fd >= 0 ? fd : undefined;
  }

  /** Every open socket of every pair (for systemd's store at a stop). */
  pairFds(): number[] {
    const fds: number[] = [];
    for (const pair of this.pairs.values()) {
      for (const socket of [pair.client, pair.upstream]) {
        if (socket && !socket.destroyed) fds.push(socketFd(socket));
      }
    }
    return fds;
  }

  /**
   * Sockets a previous daemon handed over: accepted clients (their local end is the anchor) and upstream
   * sockets, each taken back as when it was new — an upstream the kernel gave a client joins it (kmesh_l7_peers),
   * a slow-path one is spliced again to the client whose state names it, the rest (ready pool sockets: the new
   * pools refill) are closed.
   */
  adopt(sockets: Socket[], anchor: { address: string; port: number }): void {
    const upstreams = new Map<string, Socket>();
    const clients: Socket[] = [];
    for (const socket of sockets) {
      if (socket.localAddress === anchor.address && socket.localPort === anchor.port) clients.push(socket);
      else upstreams.set(this.keyOf(socket).toString('hex'), socket);
    }
    for (const client of clients) {
      const key = this.onAccept(client);
      const state = this.connState(key);
      const upstream = state?.state === CONN_STATE.slow ? upstreams.get(state.upstream.toString('hex')) : undefined;
      if (!upstream) continue;
      upstreams.delete(state?.upstream.toString('hex') ?? '');
      const hex = key.toString('hex');
      const pair = this.pairOf(hex);
      pair.upstream = upstream;
      client.removeAllListeners('data');
      this.splice(hex, key, client, upstream);
    }
    for (const [hex, upstream] of upstreams) this.adoptUpstream(upstream, Buffer.from(hex, 'hex'), true);
  }

  /** A socket's tuple as seen from its local end. */
  private keyOf(socket: Socket): Buffer {
    return tupleKey(
      socket.localAddress ?? '',
      socket.localPort ?? 0,
      socket.remoteAddress ?? '',
      socket.remotePort ?? 0,
    );
  }

  private pairOf(clientHex: string): Pair {
    let pair = this.pairs.get(clientHex);
    if (!pair) {
      pair = { clientEnded: false, upstreamEnded: false, drained: false };
      this.pairs.set(clientHex, pair);
    }
    return pair;
  }

  /** A client's anchor-side socket; returns the client's tuple. */
  private onAccept(client: Socket): Buffer {
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
      // a marker cannot leave a client that shut its sending side; one that closed needs none
      if (pair.draining) {
        const halfClosed = this.maps.clients.lookup(key) !== null;
        if (halfClosed) this.stats.finFallbacks++;
        this.passFinAfter(hex, key, halfClosed ? FIN_DELAY_MS : 0);
      }
      this.hooks.collectTaken();
      if (pair.upstream) pair.upstream.end();
      else if ((this.connState(key)?.state ?? CONN_STATE.new) === CONN_STATE.new) client.end(); // no request: nothing to wait for
      this.maybeDone(hex, key);
    });
    client.on('error', (err) => hardClose(pair.upstream, isReset(err)));
    client.on('close', () => {
      hardClose(pair.upstream, false);
      this.forget(hex, key);
    });
    if (pair.upstreamEnded) this.drain(hex, key);
    return key;
  }

  /** The upstream ended: pass its FIN on behind the bytes queued to the client. */
  private drain(hex: string, clientKey: Buffer): void {
    const pair = this.pairs.get(hex);
    if (!pair?.client || pair.draining || pair.drained) return;
    const state = this.maps.conns.lookup(clientKey);
    if (state && this.markers && !pair.clientEnded) {
      state.writeUInt32LE(CONN_STATE.draining, 0);
      this.maps.conns.update(clientKey, state);
      pair.draining = new MarkerScan(this.markers.marker);
      if (this.markers.mark(clientKey)) {
        this.stats.drainMarkers++;
        return;
      }
      pair.draining = undefined;
    }
    this.stats.finFallbacks++;
    this.passFinAfter(hex, clientKey, FIN_DELAY_MS);
  }

  private passFinAfter(hex: string, clientKey: Buffer, ms: number): void {
    if (ms === 0) this.passFin(hex, clientKey);
    else setTimeout(() => this.passFin(hex, clientKey), ms);
  }

  private passFin(hex: string, clientKey: Buffer): void {
    const pair = this.pairs.get(hex);
    if (!pair || pair.drained) return;
    pair.draining = undefined;
    pair.drained = true;
    pair.client?.end();
    this.maybeDone(hex, clientKey);
  }

  /** What a client sends in the draining state: the marker (then the FIN follows), or bytes nobody takes. */
  private onDrainData(hex: string, clientKey: Buffer, chunk: Buffer): void {
    const pair = this.pairs.get(hex);
    if (pair?.draining?.push(chunk)) this.passFin(hex, clientKey);
  }

  private connState(key: Buffer) {
    const v = this.maps.conns.lookup(key);
    return v ? l7Conn.decode(v) : undefined;
  }

  /**
   * A pooled socket the kernel gave to a client; false while the program has not yet
   * recorded the client (kmesh_l7_peers), unless `giveUp` or the socket is closed already.
   */
  adoptUpstream(upstream: Socket, upstreamKey: Buffer, giveUp: boolean): boolean {
    if (this.closing) {
      upstream.destroy();
      return true;
    }
    const clientKey = this.maps.peers.lookup(upstreamKey);
    if (!clientKey) {
      if (!(giveUp || upstream.destroyed || upstream.readableEnded)) return false;
      upstream.destroy();
      return true;
    }
    const hex = clientKey.toString('hex');
    const pair = this.pairOf(hex);
    pair.upstream = upstream;
    pair.upstreamKey = upstreamKey;
    const onEnd = () => {
      pair.upstreamEnded = true;
      this.drain(hex, clientKey);
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
    return true;
  }

  private maybeDone(hex: string, clientKey: Buffer): void {
    const pair = this.pairs.get(hex);
    if (!pair) return;
    // an upstream that ended is done for the client once its FIN was passed on
    const upstreamDone = pair.upstreamEnded ? pair.drained : pair.upstream?.destroyed === true;
    if (upstreamDone && (pair.clientEnded || pair.upstream?.destroyed)) {
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
    if (this.held) {
      const client = this.pairs.get(hex)?.client;
      client?.pause();
      this.held.push(() => {
        client?.resume();
        this.onClientData(hex, key, chunk);
      });
      return;
    }
    const pair = this.pairOf(hex);
    if (pair.draining) {
      this.onDrainData(hex, key, chunk);
      return;
    }
    const client = pair.client;
    if (!client || pair.upstream) return;
    const state = this.connState(key);
    // over max_requests: the kernel counted the overflow and sent the request here
    if (state?.state === CONN_STATE.overflow) {
      this.refuse(client, chunk);
      return;
    }
    const endpoint = state?.state === CONN_STATE.slow ? this.hooks.endpointOfPool(state.pool_id) : undefined;
    if (!state || !endpoint) {
      this.stats.slowPathFailed++;
      client.destroy();
      return;
    }
    const clusterId = state.cluster_id;
    const pending = this.pending.get(clusterId) ?? 0;
    if (pending >= (this.hooks.maxPending(clusterId) ?? Number.POSITIVE_INFINITY)) {
      this.stats.slowPathOverflows++;
      this.hooks.overflow(clusterId);
      this.refuse(client, chunk);
      return;
    }
    this.pending.set(clusterId, pending + 1);
    this.stats.slowPathSpliced++;
    client.pause();
    const upstream = dialEndpoint(endpoint, endpoint.connectTimeoutMs, (failure) => {
      const left = (this.pending.get(clusterId) ?? 1) - 1;
      if (left > 0) this.pending.set(clusterId, left);
      else this.pending.delete(clusterId);
      if (failure) {
        this.stats.slowPathFailed++;
        this.hooks.connectFailed(clusterId, endpoint, failure.cause);
        this.logger.debug(
          { endpoint: poolKey(endpoint.address, endpoint.port), err: failure.err.message },
          'L7 slow-path connect',
        );
        hardClose(client, false);
        upstream.destroy();
        return;
      }
      // the upstream's tuple in the client's state: a daemon taking the sockets over splices them again
      const now = this.maps.conns.lookup(key);
      if (now) {
        this.keyOf(upstream).copy(now, l7Conn.offsetOf('upstream'));
        this.maps.conns.update(key, now);
      }
      this.splice(hex, key, client, upstream);
    });
    pair.upstream = upstream;
    upstream.write(chunk);
    client.removeAllListeners('data');
  }

  /** The slow path's user-space splice of a client and its upstream, until either closes. */
  private splice(hex: string, key: Buffer, client: Socket, upstream: Socket): void {
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
    upstream.on('error', (err) => hardClose(client, isReset(err)));
    upstream.on('close', () => {
      hardClose(client, false);
      this.forget(hex, key);
    });
  }

  /** A clean refusal: 503 with x-envoy-overloaded for HTTP, a close for anything else; what follows is discarded. */
  private refuse(client: Socket, chunk: Buffer): void {
    client.removeAllListeners('data');
    client.on('data', () => {});
    if (REQUEST_START.test(chunk.subarray(0, 16).toString('latin1'))) client.end(OVERFLOW_RESPONSE);
    else client.end();
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
