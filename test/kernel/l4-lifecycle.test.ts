/**
 * Config changes and daemon restarts against live traffic: the kernel must never see a
 * half-written endpoint set, and pinned programs must outlive the daemon.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, startTestDaemon, testPinDir } from './support/daemon.js';
import { type DaemonProcess, spawnDaemon } from './support/daemon-process.js';
import { count, dialFrom, echoBackend, holdFrom, tcpBackends } from './support/peers.js';

const endpointSet = (ports: number[]) => ports.map((p) => `{ address = "127.0.0.1", port = ${p} }`).join(', ');

const swapConfig = (cgroup: string, ports: number[]) => `
[[services]]
cgroup = "${cgroup}"
[[clusters]]
name = "swap"
lb_policy = "round_robin"
endpoints = [ ${endpointSet(ports)} ]
[[listeners]]
name = "swap"
address = "127.10.1.1"
port = 9080
cluster = "swap"
`;

test('a reload loop swapping endpoint sets under continuous connects has zero failed connects', async (t) => {
  const cg = makeCgroup('swap');
  t.after(() => cg.remove());
  const backends = await tcpBackends(
    [23001, 23002, 23003, 23004].map((port) => ({ name: String(port), host: '127.0.0.1', port })),
  );
  t.after(() => backends.close());
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-swap-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'kmesh.toml');
  const mesh = await startTestDaemon('swap', swapConfig(cg.path, [23001, 23002]), path);
  t.after(() => mesh.destroy());
  const sets = [[23001, 23002], [23003, 23004], [23002, 23003, 23004], [23004]];

  const traffic = dialFrom(cg.path, 'tcp', '127.10.1.1', 9080, 3000);
  let done = false;
  void traffic.finally(() => {
    done = true;
  });
  let reloads = 0;
  while (!done) {
    const ports = sets[reloads % sets.length] as number[];
    writeFileSync(path, configWithPinDir(swapConfig(cg.path, ports), mesh.pinDir));
    await mesh.daemon.reload();
    reloads++;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const tally = count(await traffic);
  const failed = [...tally].filter(([reply]) => reply.startsWith('error:'));
  assert.deepEqual(failed, [], `failed connects during ${reloads} reloads`);
  assert.ok(reloads >= 20, `only ${reloads} reloads happened during the traffic`);
  assert.ok(tally.size >= 3, `traffic should have seen several endpoint sets: ${JSON.stringify([...tally])}`);
});

test('restart with pins: an established connection and new connects keep working while the daemon is down and after it returns', async (t) => {
  const cg = makeCgroup('restart');
  t.after(() => cg.remove());
  const echo = await echoBackend('e', '127.0.0.1', 23011);
  t.after(() => echo.close());
  const answering = await tcpBackends([{ name: 'n', host: '127.0.0.1', port: 23012 }]);
  t.after(() => answering.close());
  const pinDir = testPinDir('restart');
  // Hooks run in the order they are added: the daemons stop before their pins go (a live one restores them).
  const daemons: DaemonProcess[] = [];
  t.after(async () => {
    for (const d of daemons) await d.stop();
    cleanupPins(pinDir);
  });
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-restart-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const configPath = join(dir, 'kmesh.toml');
  writeFileSync(
    configPath,
    configWithPinDir(
      `[[services]]\ncgroup = "${cg.path}"\n[[clusters]]\nname = "e"\nendpoints = [ { address = "127.0.0.1", port = 23011 } ]\n[[listeners]]\nname = "e"\naddress = "127.10.1.2"\nport = 9080\ncluster = "e"\n` +
        `[[clusters]]\nname = "n"\nendpoints = [ { address = "127.0.0.1", port = 23012 } ]\n[[listeners]]\nname = "n"\naddress = "127.10.1.4"\nport = 9080\ncluster = "n"\n`,
      pinDir,
      'info', // the test waits for the "ready" line
    ),
  );

  const first = await spawnDaemon(configPath);
  daemons.push(first);
  const held = await holdFrom(cg.path, '127.10.1.2', 9080);
  t.after(() => held.close());
  assert.equal(await held.roundTrip('one'), 'e:one');

  await first.stop();
  assert.equal(await held.roundTrip('two'), 'e:two', 'established connection survives the daemon stopping');
  const whileDown = await dialFrom(cg.path, 'tcp', '127.10.1.4', 9080, 3);
  assert.deepEqual(
    whileDown.map((r) => r.reply),
    ['n', 'n', 'n'],
    `new connects while the daemon is down: ${JSON.stringify(whileDown)}`,
  );

  const second = await spawnDaemon(configPath);
  daemons.push(second);
  assert.equal(await held.roundTrip('three'), 'e:three', 'established connection survives the restart');
  const afterRestart = await dialFrom(cg.path, 'tcp', '127.10.1.4', 9080, 3);
  assert.deepEqual(
    afterRestart.map((r) => r.reply),
    ['n', 'n', 'n'],
  );
});

test('a registered cgroup that is removed and re-created is attached again', async (t) => {
  const cg = makeCgroup('recreate');
  t.after(() => cg.remove());
  const backends = await tcpBackends([{ name: 'r', host: '127.0.0.1', port: 23021 }]);
  t.after(() => backends.close());
  const mesh = await startTestDaemon(
    'recreate',
    `[[services]]\ncgroup = "${cg.path}"\n[[clusters]]\nname = "r"\nendpoints = [ { address = "127.0.0.1", port = 23021 } ]\n[[listeners]]\nname = "r"\naddress = "127.10.1.3"\nport = 9080\ncluster = "r"\n`,
  );
  t.after(() => mesh.destroy());
  const before = mesh.daemon.listServices()[0]?.cgroupId;
  assert.equal((await dialFrom(cg.path, 'tcp', '127.10.1.3', 9080, 1))[0]?.reply, 'r');

  cg.remove();
  const { mkdirSync } = await import('node:fs');
  mkdirSync(cg.path);
  const deadline = Date.now() + 3000;
  while (mesh.daemon.listServices()[0]?.cgroupId === before || !mesh.daemon.listServices()[0]?.attached) {
    assert.ok(Date.now() < deadline, `not re-attached: ${JSON.stringify(mesh.daemon.listServices())}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal((await dialFrom(cg.path, 'tcp', '127.10.1.3', 9080, 1))[0]?.reply, 'r');
});
