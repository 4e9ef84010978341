/** SIGHUP-style reloads against the real maps: a diff, and a bad file changes nothing. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, startTestDaemon } from './support/daemon.js';
import { dialFrom, tcpBackends } from './support/peers.js';

const config = (cgroup: string, ports: number[]) => `
[[services]]
cgroup = "${cgroup}"
[[clusters]]
name = "moving"
lb_policy = "round_robin"
endpoints = [ ${ports.map((p) => `{ address = "127.0.0.1", port = ${p} }`).join(', ')} ]
[[clusters]]
name = "still"
endpoints = [ { address = "127.0.0.1", port = 23101 }, { address = "127.0.0.1", port = 23102 } ]
[[listeners]]
name = "moving"
address = "127.10.2.1"
port = 9080
cluster = "moving"
[[listeners]]
name = "still"
address = "127.10.2.2"
port = 9080
cluster = "still"
`;

test('reloads write only what changed; a bad file is refused and the live config keeps working', async (t) => {
  const cg = makeCgroup('reload');
  t.after(() => cg.remove());
  const backends = await tcpBackends(
    [23101, 23102, 23103].map((port) => ({ name: String(port), host: '127.0.0.1', port })),
  );
  t.after(() => backends.close());
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-reload-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'kmesh.toml');
  const mesh = await startTestDaemon('reload', config(cg.path, [23101]), path);
  t.after(() => mesh.destroy());
  const write = (text: string) => writeFileSync(path, configWithPinDir(text, mesh.pinDir));

  write(config(cg.path, [23101]));
  await mesh.daemon.reload();
  assert.deepEqual(
    mesh.daemon.lastApply,
    { written: 0, deleted: 0, unchanged: 4 },
    'an identical reload rewrites nothing',
  );

  write(config(cg.path, [23103]));
  await mesh.daemon.reload();
  // One endpoint under a new generation plus its cluster entry; the other cluster and both listeners untouched.
  assert.deepEqual(mesh.daemon.lastApply, { written: 2, deleted: 0, unchanged: 3 });
  assert.equal((await dialFrom(cg.path, 'tcp', '127.10.2.1', 9080, 1))[0]?.reply, '23103');

  const before = JSON.stringify((await mesh.daemon.dumpConfig()) as object);
  const versionBefore = mesh.daemon.status().configVersion;
  write(
    `${config(cg.path, [23101])}\n[[listeners]]\nname = "broken"\naddress = "127.10.2.3"\nport = 70000\ncluster = "nope"\n`,
  );
  await assert.rejects(mesh.daemon.reload(), (err: unknown) => {
    assert.ok(err instanceof KmeshError);
    assert.equal(err.code, 'InvalidConfig');
    assert.match(err.message, /kmesh\.toml:\d+: listeners\[2\]\.port: must be 1\.\.65535, got 70000/);
    assert.match(err.message, /kmesh\.toml:\d+: listeners\[2\]\.cluster: unknown cluster "nope"/);
    return true;
  });
  assert.equal(mesh.daemon.status().configVersion, versionBefore);
  assert.equal(JSON.stringify((await mesh.daemon.dumpConfig()) as object), before, 'model and maps unchanged');
  assert.match(mesh.daemon.status().lastError ?? '', /listeners\[2\]\.port/);
  assert.equal(
    (await dialFrom(cg.path, 'tcp', '127.10.2.1', 9080, 1))[0]?.reply,
    '23103',
    'still the last good config',
  );
});
