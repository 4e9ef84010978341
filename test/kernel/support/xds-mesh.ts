/**
 * The setting of the xDS kernel tests: a real Daemon in the test process (own pin directory, programs only on a
 * cgroup the test made) fed by the in-repo ADS server through attachXds, real TCP backends, and the helpers to
 * read its maps and dial through it.
 */
import pino from 'pino';
import type { XdsClient } from '../../../src/api/xds/client.js';
import { parseXdsConfig } from '../../../src/api/xds/config.js';
import { attachXds } from '../../../src/api/xds/plugin.js';
import type { dumpMaps } from '../../../src/controller/map-dump.js';
import { XdsTestServer } from '../../fixtures/xds-server.js';
import { makeCgroup, type TestCgroup } from './cgroup.js';
import { startTestDaemon, type TestDaemon } from './daemon.js';
import { type Backends, dialFrom, tcpBackends } from './peers.js';

export type Maps = ReturnType<typeof dumpMaps>;

export interface XdsMesh {
  cg: TestCgroup;
  mesh: TestDaemon;
  server: XdsTestServer;
  client: XdsClient;
  port: number;
  backends: Backends;
}

export async function startXdsMesh(
  label: string,
  backends: Array<{ name: string; host: string; port: number }>,
  xds: Record<string, unknown> = {},
  versionPrefix = 'v',
): Promise<XdsMesh> {
  const cg = makeCgroup(label);
  const up = await tcpBackends(backends);
  const server = new XdsTestServer(versionPrefix);
  const port = await server.start();
  const mesh = await startTestDaemon(label, `[[services]]\ncgroup = "${cg.path}"\n`);
  const cfg = parseXdsConfig(
    { address: `127.0.0.1:${port}`, initial_backoff_ms: 50, max_backoff_ms: 300, ...xds },
    (k) => `test: xds.${k}`,
  );
  const client = attachXds(mesh.daemon, cfg, pino({ level: 'warn' }));
  mesh.daemon.observeXds(client, cfg.address);
  return { cg, mesh, server, client, port, backends: up };
}

/** Stops everything startXdsMesh started (whatever of it exists), also after a failed start. */
export async function stopXdsMesh(x: Partial<XdsMesh>): Promise<void> {
  try {
    await x.client?.stop();
  } finally {
    await x.server?.stop();
    await x.mesh?.destroy();
    await x.backends?.close();
    x.cg?.remove();
  }
}

export async function mapsOf(mesh: TestDaemon): Promise<Maps> {
  return ((await mesh.daemon.dumpConfig()) as { maps: Maps }).maps;
}

export const listenerAt = (m: Maps, addr: string, p: number) =>
  m.listeners.find((l) => l.address === addr && l.port === p);

/** What n connections from the test cgroup to vip:p got back: the backend's name or the error code. */
export async function replies(cg: TestCgroup, vip: string, p: number, n: number): Promise<string[]> {
  return (await dialFrom(cg.path, 'tcp', vip, p, n)).map((r) => r.reply ?? r.error ?? '');
}

export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const start = Date.now();
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() - start > timeoutMs)
      throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
