/** The Prometheus endpoint: GET /metrics on `[metrics] listen`. */
import { createServer, type Server } from 'node:http';
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
  close(): Promise<void>;
}

/**
 * Starts serving; rejects with a KmeshError naming the address when it cannot bind
 * (EADDRINUSE, EACCES, EADDRNOTAVAIL) so the daemon fails its start-up clearly.
 */
export async function startMetricsServer(listen: string, registry: Registry, logger: Logger): Promise<MetricsServer> {
  const { host, port } = parseListen(listen);
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        logger.error({ err }, 'metrics: collecting failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('collecting metrics failed\n');
      },
    );
  });
  // Scrapers keep connections alive; don't let them hold close() up for long.
  server.keepAliveTimeout = 5000;
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
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
