/** kmesh-daemon's command line without the kernel: --help, --check, usage errors. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { processRunning } from '../../src/controller/instance-lock.js';

const DAEMON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'bin', 'kmesh-daemon.js');
const dir = mkdtempSync(join(tmpdir(), 'kmesh-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const run = (...args: string[]) => spawnSync(process.execPath, [DAEMON, ...args], { encoding: 'utf8' });

test('--help prints usage and exits 0', () => {
  const r = run('--help');
  assert.equal(r.status, 0);
  assert.match(r.stdout, /--check/);
});

test('an unknown option is a usage error (exit 2)', () => {
  const r = run('--frobnicate');
  assert.equal(r.status, 2);
  assert.match(r.stderr, /frobnicate/);
});

test('--check accepts a good file without touching the kernel and summarises it', () => {
  const path = join(dir, 'good.toml');
  writeFileSync(
    path,
    '[[clusters]]\nname = "c"\nendpoints = [ { address = "127.0.0.1", port = 1 } ]\n[[listeners]]\nname = "l"\naddress = "127.10.0.1"\nport = 80\ncluster = "c"\n',
  );
  const r = run('--check', '--config', path);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /OK \(0 services, 1 listeners, 1 clusters, 1 endpoints\)/);
});

test('--check on a bad file exits 1 naming file, line and key', () => {
  const path = join(dir, 'bad.toml');
  writeFileSync(path, '[daemon]\nlog_level = "loud"\n');
  const r = run('--check', '--config', path);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /bad\.toml:2: daemon\.log_level: must be one of/);
});

test('--check on a missing file exits 1', () => {
  const r = run('--check', '--config', join(dir, 'absent.toml'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /absent\.toml: cannot read/);
});

test('--cleanup refuses a pin directory outside /sys/fs/bpf', () => {
  const r = run('--cleanup', '--pin-dir', '/sys/fs/bpf/../../tmp');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /refusing to clean up/);
});

test('--cleanup with a config it cannot read and no --pin-dir is refused and removes nothing', () => {
  const r = run('--cleanup', '--config', join(dir, 'absent.toml'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /absent\.toml: cannot read/);
  assert.match(r.stderr, /nothing removed: the pin directory is not known; fix the file or name it with --pin-dir DIR/);
  assert.equal(r.stdout, '');
});

test('the instance lock: a live pid holds it, a zombie or a dead pid does not', async () => {
  const runDir = mkdtempSync(join(tmpdir(), 'kmesh-run-'));
  after(() => rmSync(runDir, { recursive: true, force: true }));
  // `sleep 0 &` exits at once; its parent (exec'd into sleep 5) never reaps it: a zombie.
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 5'], { stdio: ['ignore', 'pipe', 'ignore'] });
  after(() => parent.kill('SIGKILL'));
  const zombie = Number((await once(parent.stdout, 'data'))[0].toString().trim());
  const holder = spawn('sleep', ['5'], { stdio: 'ignore' });
  after(() => holder.kill('SIGKILL'));
  await new Promise((resolve) => setTimeout(resolve, 200));

  const lockFor = (pid: number) => writeFileSync(join(runDir, '_sys_fs_bpf_kmesh-cli-lock.pid'), `${pid}\n`);
  const cleanup = () =>
    spawnSync(process.execPath, [DAEMON, '--cleanup', '--pin-dir', '/sys/fs/bpf/kmesh-cli-lock'], {
      encoding: 'utf8',
      env: { ...process.env, KMESH_RUN_DIR: runDir },
    });
  lockFor(holder.pid as number);
  assert.equal(processRunning(holder.pid as number), true);
  const refused = cleanup();
  assert.equal(refused.status, 1);
  assert.match(
    refused.stderr,
    new RegExp(
      `a kmesh-daemon \\(pid ${holder.pid}\\) is running on /sys/fs/bpf/kmesh-cli-lock; nothing removed\\. Stop it first \\(systemctl stop kmesh, or kill ${holder.pid}\\)`,
    ),
  );

  assert.equal(processRunning(zombie), false, 'a zombie is not running');
  lockFor(zombie);
  const zombieLock = cleanup();
  assert.equal(zombieLock.status, 0, zombieLock.stderr);
  assert.equal(zombieLock.stdout, 'nothing pinned at /sys/fs/bpf/kmesh-cli-lock\n');
  lockFor(2 ** 22 + 1); // above pid_max's maximum: never a process
  assert.equal(cleanup().status, 0);
});

test('--check refuses what the daemon would: over the listener capacity, named at the first listener beyond it', () => {
  const path = join(dir, 'over.toml');
  const listener = (i: number) =>
    `[[listeners]]\nname = "l${i}"\naddress = "127.41.${i >> 8}.${i & 255}"\nport = 31000\ncluster = "c"\n`;
  const header = '[[clusters]]\nname = "c"\nendpoints = [ { address = "127.0.0.1", port = 1 } ]\n';
  writeFileSync(path, header + Array.from({ length: 16_385 }, (_, i) => listener(i)).join(''));
  const r = run('--check', '--config', path);
  assert.equal(r.status, 1);
  // 3 header lines, 5 per listener: listeners[16384] starts at line 3 + 16384 * 5 + 1.
  assert.equal(
    r.stderr,
    'kmesh-daemon: over.toml:81924: listeners[16384]: 16,385 listeners exceed the listener map capacity of 16,384\n',
  );
});

test('--check states the documented ranges: a quoted port, a weight of 1e12', () => {
  const path = join(dir, 'ranges.toml');
  writeFileSync(
    path,
    '[[clusters]]\nname = "c"\nendpoints = [ { address = "127.0.0.1", port = "8080", weight = 1e12 } ]\n[[clusters]]\nname = "d"\nendpoints = [ { address = "127.0.0.1", port = 1, weight = 1e12 } ]\n',
  );
  const r = run('--check', '--config', path);
  assert.equal(r.status, 1);
  assert.equal(
    r.stderr,
    [
      'kmesh-daemon: ranges.toml:3: clusters[0].endpoints[0].port: must be an integer 1..65535, got "8080" (a string: write the number without quotes)',
      'ranges.toml:6: clusters[1].endpoints[0].weight: must be an integer 1..1000000, got 1000000000000',
      '',
    ].join('\n'),
  );
});
