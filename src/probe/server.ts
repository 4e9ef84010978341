/** The Prometheus endpoint: GET /metrics on `[metrics] listen`. */
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { KmeshError } from '../contracts/errors.js';
import { type HostPort, hostPortProblem, parseHostPort } from '../model/address.js';

/** "host:port", "[v6]:port" or ":port" (all addresses), as the TOML check reads it. */
export function parseListen(listen: string): HostPort {
  const problem = hostPortProblem(listen, 'listen');
  const parsed = parseHostPort(listen);
  if (problem || !parsed) throw new KmeshError('InvalidConfig', `[metrics] listen: ${problem}, got "${listen}"`);
  return { host: parsed.host === '' ? '::' : parsed.host, port: parsed.port };
}

export interface MetricsServer {
  /** The bound address (port resolved when 0 was asked for). */
  address: { host: string; port: number };
  /** How many times the registry was read (scrapes arriving together share one read). */
  readonly collections: number;
  close(): Promise<void>;
}

/**
 * /metrics is a public surface: whoever can reach it must not be able to exhaust the daemon's fds or
 * memory, nor make it read the kernel maps once per request.
 */
export const METRICS_LIMITS = {
  /** Open connections; more are closed as soon as they are accepted. */
  maxConnections: 256,
  /**
   * Scrapes served at once; further connections wait, accepted but not read, in arrival order. Each one
   * being served costs Node's HTTP objects; with 200 at once their garbage outlives V8's young generation
   * and grows the heap (docs/metrics.md).
   */
  maxActive: 8,
  /**
   * A connection whose turn came but which sent no complete request head within this gives its place up
   * (it stays open, under the header timeout): slow or idle sockets cannot hold the turns of scrapers.
   */
  turnWithoutRequestMs: 100,
  /** A request's headers must arrive within this (slowloris). */
  headersTimeoutMs: 5_000,
  /** The whole request, likewise. */
  requestTimeoutMs: 10_000,
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: 5_000,
  /** How often the timeouts above are enforced. */
  checkIntervalMs: 1_000,
} as const;

export type MetricsLimits = { [K in keyof typeof METRICS_LIMITS]: number };

/**
 * Starts serving; rejects with a KmeshError naming the address when it cannot bind
 * (EADDRINUSE, EACCES, EADDRNOTAVAIL) so the daemon fails its start-up clearly.
 */
export async function startMetricsServer(
  listen: string,
  registry: Registry,
  logger: Logger,
  limits: MetricsLimits = METRICS_LIMITS,
): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const admission = new Admission(limits);
  // Scrapes share reads: a scrape whose connection arrived before a read finished (while it was under
  // way, or earlier and waiting its turn) gets that read's result — one read of the kernel maps and one
  // encoded body that every response sends (not a copy per connection). Only a connection accepted after
  // the read finished makes a new one, so no scrape is answered with counts older than its arrival. The
  // body is dropped when no connection is left, so an idle daemon keeps none.
  let latest: { finishedAt: number; body: Promise<Buffer> } | undefined;
  let collections = 0;
  admission.onIdle = () => {
    if (latest && latest.finishedAt < Number.POSITIVE_INFINITY) latest = undefined;
  };
  const collect = (arrivedAt: number): Promise<Buffer> => {
    if (latest && arrivedAt <= latest.finishedAt) return latest.body;
    collections++;
    const read = { finishedAt: Number.POSITIVE_INFINITY, body: Promise.resolve(Buffer.alloc(0)) };
    read.body = registry.metrics().then(
      (text) => {
        read.finishedAt = performance.now();
        return Buffer.from(text);
      },
      (err: unknown) => {
        if (latest === read) latest = undefined; // a failed read is never reused
        throw err;
      },
    );
    latest = read;
    return read.body;
  };
  const http = createHttpServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: limits.checkIntervalMs,
    },
    (req, res) => {
      const arrivedAt = admission.requestStarted(req.socket, res);
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
        return;
      }
      collect(arrivedAt).then(
        (body) => {
          res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : body);
        },
        (err: unknown) => {
          logger.error({ err }, 'metrics: collecting failed');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
        },
      );
    },
  );
  http.keepAliveTimeout = limits.keepAliveTimeoutMs;
  // The HTTP server never listens itself (the TCP server below accepts and hands connections over in
  // turn); 'listening' is what starts its header/request timeout checks.
  http.emit('listening');
  admission.serve = (socket) => http.emit('connection', socket);
  const server: Server = createTcpServer({ pauseOnConnect: true }, (socket) => admission.offer(socket));
  server.maxConnections = limits.maxConnections;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      const why =
        err.code === 'EADDRINUSE'
          ? 'the address is already in use (another kmesh-daemon or exporter?)'
          : err.code === 'EACCES'
            ? 'permission denied'
            : err.code === 'EADDRNOTAVAIL'
              ? 'no such local address'
              : err.message;
      reject(new KmeshError('Failed', `metrics: cannot listen on ${listen}: ${why}`));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (err) => logger.error({ err }, 'metrics server error'));
  const bound = server.address();
  const address = typeof bound === 'object' && bound ? { host: bound.address, port: bound.port } : { host, port };
  logger.info({ listen: `${address.host}:${address.port}` }, 'metrics: serving GET /metrics');
  return {
    address,
    get collections() {
      return collections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        admission.stop();
        http.close();
        http.closeAllConnections();
      }),
  };
}

/**
 * Hands accepted connections (paused: nothing read yet) to the HTTP server in arrival order, at most
 * `maxActive` holding a turn at once. A turn lasts until the connection's first response is sent — or
 * `turnWithoutRequestMs` if no request head came by then. The header timeout counts from the accept: a
 * connection without a request head by then is closed, whether it still waits for its turn or gave it up.
 */
class Admission {
  serve: (socket: Socket) => void = () => {};
  onIdle: () => void = () => {};
  private turns = 0;
  private readonly waiting: Socket[] = [];
  private readonly arrived = new WeakMap<Socket, number>();
  /** Connections holding a turn with no request yet: how to end the turn. */
  private readonly pending = new Map<Socket, { end: () => void; timer: NodeJS.Timeout }>();
  /** Connections that gave their turn up with no request head yet, in arrival order. */
  private readonly slow = new Set<Socket>();
  private readonly sweep: NodeJS.Timeout;

  constructor(private readonly limits: MetricsLimits) {
    this.sweep = setInterval(() => this.expire(), limits.checkIntervalMs).unref();
  }

  offer(socket: Socket): void {
    socket.on('error', () => {}); // a peer's reset; the HTTP server logs nothing for it either
    this.arrived.set(socket, performance.now());
    if (this.turns < this.limits.maxActive) this.admit(socket);
    else this.waiting.push(socket);
  }

  /** When the connection was accepted (performance.now()). */
  private acceptedAt(socket: Socket): number {
    return this.arrived.get(socket) ?? 0;
  }

  /**
   * A request head arrived: the connection keeps its turn until the response is done. Returns when the
   * request counts as arrived: a connection's first request when the connection was accepted (it may have
   * waited for its turn), a later one on a kept-alive connection now.
   */
  requestStarted(socket: Socket, res: ServerResponse): number {
    this.slow.delete(socket);
    const turn = this.pending.get(socket);
    if (!turn) return performance.now();
    this.pending.delete(socket);
    clearTimeout(turn.timer);
    res.once('close', turn.end);
    return this.acceptedAt(socket);
  }

  stop(): void {
    clearInterval(this.sweep);
    for (const { timer } of this.pending.values()) clearTimeout(timer);
    this.pending.clear();
    this.slow.clear();
    for (const socket of this.waiting.splice(0)) socket.destroy();
  }

  private admit(socket: Socket): void {
    this.turns++;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      this.turns--;
      const turn = this.pending.get(socket);
      if (turn) clearTimeout(turn.timer);
      this.pending.delete(socket);
      this.next();
    };
    const giveUp = (): void => {
      if (!socket.destroyed) this.slow.add(socket);
      end();
    };
    this.pending.set(socket, { end, timer: setTimeout(giveUp, this.limits.turnWithoutRequestMs) });
    socket.once('close', () => {
      this.slow.delete(socket);
      end();
    });
    this.serve(socket);
    socket.resume();
  }

  private next(): void {
    while (this.turns < this.limits.maxActive) {
      const socket = this.waiting.shift();
      if (!socket) break;
      if (!socket.destroyed) this.admit(socket);
    }
    if (this.turns === 0 && this.waiting.length === 0) this.onIdle();
  }

  /** Both lists are in arrival order: close from their heads what has no request head in time. */
  private expire(): void {
    const deadline = performance.now() - this.limits.headersTimeoutMs;
    while (this.waiting.length > 0 && this.acceptedAt(this.waiting[0] as Socket) < deadline) {
      this.waiting.shift()?.destroy();
    }
    for (const socket of this.slow) {
      if (this.acceptedAt(socket) >= deadline) break;
      this.slow.delete(socket);
      socket.destroy();
    }
  }
}
