/** The Prometheus endpoint: GET /metrics on `[metrics] listen`. */
import { createServer, type Server } from 'node:net';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { KmeshError } from '../contracts/errors.js';
import { type HostPort, hostPortProblem, parseHostPort } from '../model/address.js';
import { fullGc } from './full-gc.js';
import { type Answer, HttpEndpoint } from './http-endpoint.js';
import { makeResponse, type Response } from './http-head.js';

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
   * Scrapes served at once: the work in flight is bounded whatever the number of scrapers; further
   * connections wait, accepted but not read, in arrival order.
   */
  maxActive: 8,
  /**
   * A connection whose turn came but which sent no complete request head within this gives its place up
   * (it stays open, under the header timeout): slow or idle sockets cannot hold the turns of scrapers.
   */
  turnWithoutRequestMs: 100,
  /** A connection's first request head must be complete within this of the accept (slowloris). */
  headersTimeoutMs: 5_000,
  /** A kept-alive connection's next request head, likewise, from the last response. */
  keepAliveTimeoutMs: 5_000,
  /** A longer request head is refused (431); Prometheus sends a few hundred bytes. */
  maxHeadBytes: 8_192,
  /** A scrape whose read of the registry takes longer is answered 503 and its connection closed. */
  answerTimeoutMs: 10_000,
  /** How often the timeouts above are enforced. */
  checkIntervalMs: 1_000,
  /** Connections accepted since the last full GC after which the endpoint, once idle, runs one. */
  fullGcAfterConnections: 100,
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
  // Scrapes share reads: a scrape whose connection arrived before a read finished (while it was under
  // way, or earlier and waiting its turn) gets that read's result — one read of the kernel maps and one
  // encoded response that every scrape is sent (not a copy per connection). Only a connection accepted
  // after the read finished makes a new one, so no scrape is answered with counts older than its arrival.
  // The response is dropped when no connection is left, so an idle daemon keeps none.
  const metricsHeaders = `Content-Type: ${registry.contentType}\r\n`;
  let latest: { finishedAt: number; response: Response | Promise<Response> } | undefined;
  let collections = 0;
  const collect = (arrivedAt: number): Response | Promise<Response> => {
    if (latest && arrivedAt <= latest.finishedAt) return latest.response;
    collections++;
    const read: NonNullable<typeof latest> = { finishedAt: Number.POSITIVE_INFINITY, response: COLLECT_FAILED };
    read.response = registry.metrics().then(
      (text) => {
        read.finishedAt = performance.now();
        read.response = makeResponse(200, metricsHeaders, Buffer.from(text));
        return read.response;
      },
      (err: unknown) => {
        if (latest === read) latest = undefined; // a failed read is never reused
        logger.error({ err }, 'metrics: collecting failed');
        return COLLECT_FAILED;
      },
    );
    latest = read;
    return read.response;
  };
  const answer: Answer = (request, arrivedAt) => {
    if (request.path !== '/metrics') return NOT_FOUND;
    if (request.method !== 'GET' && request.method !== 'HEAD') return NOT_ALLOWED;
    return collect(arrivedAt);
  };
  const endpoint = new HttpEndpoint(limits, answer);
  // After a burst of connections, their objects that lived through young-generation collections sit in V8's
  // old space until its next full collection, which its growth policy puts off by several MB: one full
  // collection when the burst is over returns them at once (docs/metrics.md has the numbers).
  let acceptedAtLastGc = 0;
  endpoint.onIdle = () => {
    if (latest && latest.finishedAt < Number.POSITIVE_INFINITY) latest = undefined;
    if (endpoint.accepted - acceptedAtLastGc < limits.fullGcAfterConnections) return;
    acceptedAtLastGc = endpoint.accepted;
    setImmediate(() => {
      const started = performance.now();
      fullGc();
      logger.debug({ ms: performance.now() - started }, 'metrics: full GC after a burst of connections');
    });
  };
  // allowHalfOpen: a client that sends its request and then its FIN still gets the response.
  const server: Server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (socket) =>
    endpoint.offer(socket),
  );
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
        endpoint.stop();
      }),
  };
}

const TEXT = 'Content-Type: text/plain\r\n';
const NOT_FOUND = makeResponse(404, TEXT, Buffer.from('not found: try /metrics\n'));
const NOT_ALLOWED = makeResponse(405, 'Allow: GET, HEAD\r\n', Buffer.alloc(0));
const COLLECT_FAILED = makeResponse(500, TEXT, Buffer.from('collecting metrics failed\n'));
