/**
 * --cleanup cannot hurt: beside a running daemon it is refused (and says how to stop the daemon); pins
 * removed under a running daemon anyway come back within one rescan; after the daemon stopped it removes
 * Kmesh's pins and nothing else. Ports 31000-31009, VIPs 127.41.0.0/24, a test-made cgroup only.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { pinPaths } from '../../src/controller/paths.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, testPinDir } from './support/daemon.js';
import { DAEMON, spawnDaemon } from './support/daemon-process.js';
import { dialFrom, tcpBackends } from './support/peers.js';

const VIP = '127.41.0.1';
// Its own backend address: a fixed port on 127.0.0.1 collides with whatever else runs on the machine.
const BACKEND = '127.41.0.2';

test('--cleanup beside a live daemon is refused; pins pulled from under it are restored; then it cleans only its own', async (t) => {
  const cg = makeCgroup('cleanup');
  t.after(() => cg.remove());
  const backends = await tcpBackends([{ name: 'b', host: BACKEND, port: 31001 }]);
  t.after(() => backends.close());
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-cleanup-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pinDir = testPinDir('cleanup');
  const foreign = join(pinDir, 'other-tool');
  t.after(() => {
    if (existsSync(foreign)) rmdirSync(foreign);
    cleanupPins(pinDir);
  });
  const configPath = join(dir, 'kmesh.toml');
  const toml = `[[services]]\ncgroup = "${cg.path}"\n[[clusters]]\nname = "b"\nendpoints = [ { address = "${BACKEND}", port = 31001 } ]\n[[listeners]]\nname = "b"\naddress = "${VIP}"\nport = 31000\ncluster = "b"\n`;
  writeFileSync(configPath, configWithPinDir(toml, pinDir, 'info'));
  const env = { KMESH_RUN_DIR: join(dir, 'run') };
  const cleanup = () =>
    spawnSync(process.execPath, [DAEMON, '--cleanup', '--config', configPath], {
      encoding: 'utf8',
      env: { ...process.env, ...env },
    });
  const steered = async () => (await dialFrom(cg.path, 'tcp', VIP, 31000, 1))[0]?.reply;

  const daemon = await spawnDaemon(configPath, env);
  t.after(() => daemon.stop());
  assert.equal(await steered(), 'b');

  const refused = cleanup();
  assert.equal(refused.status, 1, refused.stdout);
  const pid = daemon.child.pid;
  assert.equal(
    refused.stderr.trim(),
    `kmesh-daemon: --cleanup: a kmesh-daemon (pid ${pid}) is running on ${pinDir}; nothing removed. Stop it first (systemctl stop kmesh, or kill ${pid}), then run --cleanup again`,
  );
  assert.equal(await steered(), 'b', 'still steered after the refused cleanup');

  // Pulled from under it anyway: every link (the kernel detaches them at once) and a map pin.
  const pins = pinPaths(pinDir);
  const mapPin = readdirSync(pins.maps)[0] as string;
  const started = Date.now();
  rmSync(pins.links, { recursive: true });
  unlinkSync(join(pins.maps, mapPin));
  await daemon.waitFor(/pinned links disappeared: attaching again/, 2000);
  await daemon.waitFor(/pinned maps disappeared: pinned again/, 2000);
  const restoredMs = Date.now() - started;
  t.diagnostic(`links and map pin restored ${restoredMs} ms after removal (rescan interval 100 ms)`);
  assert.ok(restoredMs < 1000, `restored after ${restoredMs} ms`);
  assert.ok(existsSync(join(pins.maps, mapPin)));
  assert.equal(await steered(), 'b', 'steered again');

  await daemon.stop();
  mkdirSync(foreign);
  const done = cleanup();
  assert.equal(done.status, 0, done.stderr);
  assert.match(done.stdout, /^removed \d+ pins under /);
  assert.match(done.stdout, new RegExp(`left what Kmesh did not pin there: ${foreign}\\n`));
  assert.deepEqual(readdirSync(pinDir), ['other-tool']);
  assert.match((await dialFrom(cg.path, 'tcp', VIP, 31000, 1))[0]?.error ?? '', /ECONNREFUSED/, 'nothing attached');
});
