/**
 * L7 restarts lose nothing, outside a booted systemd: the real kmesh-daemon binary runs under a stand-in for
 * systemd's notify socket and file-descriptor store (support/http-fd-store.py), and is restarted (SIGTERM, then a
 * new process with the stored fds) while a registered client keeps keep-alive connections busy on a header route
 * and opens a new connection per request on the default route: not one request fails, the keep-alive connections
 * are the same ones after the restart, and every answer comes from the right route's backend.
 * Addresses 127.63.1.x, ports 31750-31759.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../src/controller/node-flags.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, testPinDir } from './support/daemon.js';
import { DAEMON } from './support/daemon-process.js';
import { httpBackends, runIn } from './support/http-peers.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const CLIENT = join(HERE, 'support', 'http-client.js');
/** The Python stand-in is not compiled: it is read from the source tree. */
const FD_STORE = join(HERE, '..', '..', '..', 'test', 'kernel', 'support', 'http-fd-store.py');
const VIP = '127.63.1.1';
const HOST = '127.63.1.2';
const PORT = 31750;
const LOAD_MS = 5000;
const RESTART_AT_MS = 1500;

/** The stand-in's event lines, and a way to wait for one (polled: a few waits per test). */
function supervise(child: ChildProcess) {
  let out = '';
  child.stdout?.on('data', (c) => {
    out += c;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitFor = async (pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> => {
    for (const end = Date.now() + timeoutMs; Date.now() < end; await sleep(50)) {
      const m = pattern.exec(out);
      if (m) return m;
      if (child.exitCode !== null) throw new Error(`fd store exited: ${out}`);
    }
    throw new Error(`no ${pattern} in: ${out}`);
  };
  return { waitFor, exited };
}

test('SIGTERM restart under L7 load, sockets kept in the fd store: 0 failed requests, keep-alive connections survive', async (t) => {
  const cg = makeCgroup('l7restart');
  t.after(() => cg.remove());
  const backends = await httpBackends(
    [
      { name: 'web', port: 31751 },
      { name: 'canary', port: 31752 },
    ],
    HOST,
  );
  t.after(() => backends.close());
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-l7restart-'));
  const pinDir = testPinDir('l7restart');
  const configPath = join(dir, 'kmesh.toml');
  const toml = [
    '[[services]]',
    `cgroup = "${cg.path}"`,
    '[[clusters]]',
    'name = "web"',
    `endpoints = [ { address = "${HOST}", port = 31751 } ]`,
    '[[clusters]]',
    'name = "canary"',
    `endpoints = [ { address = "${HOST}", port = 31752 } ]`,
    '[[listeners]]',
    'name = "web"',
    `address = "${VIP}"`,
    `port = ${PORT}`,
    'protocol = "http"',
    'cluster = "web"',
    '[[listeners.routes]]',
    'match = { headers = [ { name = "x-canary", exact = "1" } ] }',
    'cluster = "canary"',
    '',
  ].join('\n');
  writeFileSync(configPath, configWithPinDir(toml, pinDir, 'info'));
  const store = spawn(
    'python3',
    [
      FD_STORE,
      join(dir, 'notify'),
      join(dir, 'daemon.log'),
      '--',
      process.execPath,
      ...DAEMON_NODE_FLAGS,
      DAEMON,
      '--config',
      configPath,
    ],
    { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...DAEMON_ENV } },
  );
  const sup = supervise(store);
  // Hooks run in the order they are added: the daemons stop before their pins go.
  t.after(async () => {
    store.stdin?.end('stop\n');
    const stopped = await Promise.race([sup.exited.then(() => true), sleep(15_000).then(() => false)]);
    if (!stopped && store.pid) process.kill(store.pid, 'SIGKILL');
    cleanupPins(pinDir);
    rmSync(dir, { recursive: true, force: true });
  });
  const log = () => readFileSync(join(dir, 'daemon.log'), 'utf8');
  /** A wait that fails with the daemons' last log lines. */
  const expect = (pattern: RegExp) =>
    sup.waitFor(pattern).catch((err: Error) => {
      throw new Error(`${err.message}\ndaemon log:\n${log().split('\n').slice(-15).join('\n')}`);
    });

  await expect(/^ready 1$/m);
  // the L7 data path runs and its anchor listener is in the store; the pools fill
  await expect(/^stored kmesh-l7-anchor 1$/m);
  await sleep(500);

  const underLoad = async () => {
    const r = await runIn(
      cg.path,
      process.execPath,
      [
        CLIENT,
        'load',
        JSON.stringify({
          url: `http://${VIP}:${PORT}`,
          ms: LOAD_MS,
          keepalive: { count: 4, headers: { 'x-canary': '1' } },
          fresh: { count: 2 },
        }),
      ],
      LOAD_MS + 20_000,
    );
    assert.equal(r.code, 0, r.stderr);
    return JSON.parse(r.stdout) as { tally: Record<string, number>; keepaliveConnections: number };
  };
  const load = underLoad();
  await sleep(RESTART_AT_MS);
  store.stdin?.write('restart\n');
  const stored = Number((await expect(/^stored kmesh-l7-conn (\d+)$/m))[1]);
  await expect(/^exited 0$/m);
  await expect(/^ready 2$/m);
  await expect(/^removed kmesh-l7-conn \d+$/m);
  const { tally, keepaliveConnections } = await load;
  t.diagnostic(`restart under load: ${JSON.stringify(tally)}; ${stored} sockets handed over`);
  for (const line of log().split('\n')) if (/L7 sockets/.test(line)) t.diagnostic(line);
  const errors = Object.keys(tally).filter((k) => !/^(keepalive:canary|fresh:web)$/.test(k));
  assert.deepEqual(errors, [], `every request answered by its route's backend: ${JSON.stringify(tally)}`);
  assert.equal(keepaliveConnections, 4, 'the keep-alive connections are the ones opened before the restart');
  assert.ok((tally['fresh:web'] ?? 0) >= 50, JSON.stringify(tally));
  assert.ok(stored >= 8, `the 4 keep-alive pairs (and pooled sockets) were handed over: ${stored}`);
  assert.match(log(), /L7 sockets taken over from the previous daemon/);

  // A crash (SIGKILL) stores nothing more: the connections the dead daemon carried close with it; the anchor
  // listener stays in the store, so new connections are not refused: they wait in its backlog for the next daemon.
  const crashLoad = underLoad();
  await sleep(RESTART_AT_MS);
  store.stdin?.write('crash\n');
  await expect(/^ready 3$/m);
  const crash = await crashLoad;
  t.diagnostic(
    `crash (kill -9) under load: ${JSON.stringify(crash.tally)}; ${crash.keepaliveConnections} keep-alive connections`,
  );
  const refused = Object.keys(crash.tally).filter((k) => /ECONNREFUSED/.test(k));
  assert.deepEqual(refused, [], 'no connect refused while no daemon ran');
  assert.ok((crash.tally['fresh:web'] ?? 0) >= 50, JSON.stringify(crash.tally));
});
