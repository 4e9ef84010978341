/** kmesh-daemon's command line without the kernel: --help, --check, usage errors. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

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
