/**
 * The root-cgroup guard against the real kernel. On the host only refusals are tried (nothing is ever
 * attached to the host root: the attach call gets no programs). The positive case — a daemon whose
 * cgroup v2 root is something it could really attach to — runs inside a cgroup namespace whose root is
 * a cgroup this test made: there the daemon must refuse its root and still attach to a cgroup below it.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readlinkSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { type Parts, startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import type { UnitCgroupResolver } from '../../src/controller/unit-resolver.js';
import { CgroupLinks } from '../../src/runtime/cgroup-links.js';
import { cgroup2View, cgroupId } from '../../src/runtime/cgroup2.js';
import { makeCgroup } from './support/cgroup.js';
import { configWithPinDir, testPinDir } from './support/daemon.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const DAEMON = join(HERE, '..', '..', 'src', 'bin', 'kmesh-daemon.js');
const NS_CHILD = join(HERE, 'support', 'cgroupns-child.js');
const ROOT = /is the cgroup v2 root/;
/** The tests' own links directory for direct attach calls is not Kmesh's layout, so cleanupPins leaves it. */
const DIRECT_LINKS = 'links-direct';

function removePins(pinDir: string): void {
  rmSync(join(pinDir, DIRECT_LINKS), { recursive: true, force: true });
  cleanupPins(pinDir);
}

/** Program ids bpftool reports attached directly to a cgroup. */
function attachedProgramIds(cgroup: string): number[] {
  const out = execFileSync('bpftool', ['-j', 'cgroup', 'show', cgroup], { encoding: 'utf8' }).trim();
  return out ? (JSON.parse(out) as Array<{ id: number }>).map((p) => p.id) : [];
}

test('on the host: every spelling of the root is refused at registration, reload and attach', async (t) => {
  const view = cgroup2View();
  const m = view.mount;
  const cg = makeCgroup('guard');
  t.after(() => cg.remove());
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-guard-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const pinDir = testPinDir('guard');
  const path = join(dir, 'kmesh.toml');
  const good = configWithPinDir(`[[services]]\ncgroup = "${cg.path}"\n`, pinDir);
  writeFileSync(path, good);
  // systemd would answer "/" for -.slice: a unit resolved to the root is refused like a path.
  const units: UnitCgroupResolver = {
    resolve: async (unit) => (unit === '-.slice' ? '/' : unit === 'dot.slice' ? `${m}/x/../` : null),
    watch: () => () => {},
    close: () => {},
  };
  let parts: Parts | undefined;
  t.after(async () => {
    await parts?.stop();
    removePins(pinDir);
  });
  parts = await startParts({
    config: parseConfig(good, path),
    logger: pino({ level: 'silent' }),
    pinDir,
    unitResolver: units,
  });
  const { daemon } = parts;
  const before = attachedProgramIds(m);

  for (const spelling of ['/', '//', m, `${m}/`, `${m}//`, `${m}/.`, `${m}/x/..`, `${m}/x/../`, '/x/../']) {
    await assert.rejects(daemon.registerService({ cgroup: spelling }), ROOT, spelling);
  }
  await assert.rejects(daemon.registerService({ cgroup: `${m}/..` }), /not below the cgroup v2 mount/);
  await assert.rejects(daemon.registerService({ cgroup: `${m}/cgroup.procs` }), /not a directory/);
  await assert.rejects(daemon.registerService({ unit: '-.slice' }), ROOT);
  await assert.rejects(daemon.registerService({ unit: 'dot.slice' }), ROOT);

  // A reload naming the root is refused whole, with file, line and key; the live registration stays.
  writeFileSync(
    path,
    configWithPinDir(`[[services]]\ncgroup = "${cg.path}"\n[[services]]\ncgroup = "${m}/"\n`, pinDir),
  );
  await assert.rejects(
    daemon.reload(),
    /kmesh\.toml:9: services\[1\]\.cgroup: refusing cgroup .*is the cgroup v2 root/,
  );
  assert.deepEqual(
    daemon.listServices().map((s) => [s.name, s.attached]),
    [[cg.path, true]],
  );

  // The last line of defence, on the opened directory (no programs given: nothing could attach here).
  const links = new CgroupLinks(join(pinDir, DIRECT_LINKS), view);
  for (const spelling of [m, `${m}/`, `${cg.path}/..`, `${cg.path}/../`]) {
    assert.throws(() => links.attach(spelling, []), ROOT, spelling);
  }
  assert.deepEqual(links.attachedIds(), []);
  assert.deepEqual(attachedProgramIds(m), before, 'nothing new on the host root');
});

/**
 * Runs argv in a new cgroup namespace rooted at `root` (a test cgroup), with that root mounted at `mount`
 * in a private mount namespace (the host's mount there is only hidden from the namespace, not touched).
 */
function inCgroupNamespace(root: string, mount: string, argv: string[], env: Record<string, string> = {}) {
  const script = `echo $$ > "$0/cgroup.procs" && exec unshare --cgroup --mount --propagation private -- sh -c 'umount -l "$0" && mount -t cgroup2 cgroup2 "$0" && exec "$@"' "$@"`;
  return spawnSync('sh', ['-c', script, root, mount, ...argv], {
    encoding: 'utf8',
    timeout: 60_000,
    env: { ...process.env, ...env },
  });
}

test('inside a cgroup namespace whose root is a test cgroup: the daemon refuses that root', async (t) => {
  const mount = cgroup2View().mount;
  const root = makeCgroup('nsroot');
  const child = join(root.path, 'child');
  mkdirSync(child);
  const pinDir = testPinDir('nsroot');
  t.after(() => {
    removePins(pinDir);
    rmdirSync(child);
    root.remove();
  });
  const dir = mkdtempSync(join(tmpdir(), 'kmesh-ns-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  // --check, seen from inside: "/" and the mount path are the namespace root there.
  const config = join(dir, 'kmesh.toml');
  writeFileSync(
    config,
    `[[services]]\ncgroup = "/child"\n[[services]]\ncgroup = "/"\n[[services]]\ncgroup = "${mount}/"\n`,
  );
  const check = inCgroupNamespace(root.path, mount, [process.execPath, DAEMON, '--check', '--config', config]);
  assert.equal(check.status, 1, `${check.stdout}${check.stderr}`);
  assert.match(check.stderr, /kmesh\.toml:4: services\[1\]\.cgroup: refusing cgroup \/: it is the cgroup v2 root/);
  assert.match(check.stderr, /kmesh\.toml:6: services\[2\]\.cgroup: refusing cgroup .*\/: it is the cgroup v2 root/);
  assert.doesNotMatch(check.stderr, /services\[0\]/);

  // The daemon itself, past the TOML check: configured, D-Bus-style and direct attaches of the root.
  const run = inCgroupNamespace(root.path, mount, [process.execPath, NS_CHILD], {
    KMESH_NS_ROOT_INO: String(cgroupId(root.path)),
    KMESH_NS_PIN_DIR: pinDir,
    KMESH_TEST_CGROUP_NS: readlinkSync('/proc/self/ns/cgroup'),
  });
  assert.equal(run.status, 0, `${run.stdout}${run.stderr}`);
  const report = JSON.parse(run.stdout) as {
    services: Array<{ name: string; attached: boolean }>;
    lastError?: string;
    runtime: Record<string, string>;
    attach: string;
  };
  assert.deepEqual(
    report.services.map((s) => [s.name, s.attached]),
    [['/child', true]],
  );
  assert.match(report.lastError ?? '', /\/: refusing cgroup \/: it is the cgroup v2 root/);
  for (const [spelling, answer] of Object.entries(report.runtime)) assert.match(answer, ROOT, spelling);
  assert.match(report.attach, ROOT);

  // What the kernel holds: nothing on the namespace root, the daemon's programs on the cgroup below it.
  assert.deepEqual(attachedProgramIds(root.path), []);
  assert.ok(attachedProgramIds(child).length > 0, 'the positive control: the child cgroup was attached');
});
