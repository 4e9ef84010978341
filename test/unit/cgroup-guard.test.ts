/**
 * The root-cgroup guard decides by identity (device + inode, real paths), never by spelling: every
 * spelling of the root, a symlink to it, a path leading out of the hierarchy and a plain file are
 * refused; a cgroup below the root, existing or not yet, is accepted.
 */
import assert from 'node:assert/strict';
import {
  closeSync,
  constants,
  mkdirSync,
  mkdtempSync,
  openSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseConfig } from '../../src/controller/config/load.js';
import {
  type Cgroup2View,
  CgroupRefused,
  cgroup2View,
  findCgroup2Mount,
  guardCgroupFd,
  guardCgroupPath,
} from '../../src/runtime/cgroup2.js';

const refused = (path: string, view: Cgroup2View, why: RegExp) =>
  assert.throws(
    () => guardCgroupPath(path, view),
    (err: unknown) => err instanceof CgroupRefused && why.test(err.message) && err.message.includes(path),
    `${JSON.stringify(path)} must be refused (${why})`,
  );

describe('the machine cgroup v2 mount', () => {
  const view = cgroup2View();
  const m = view.mount;
  const ROOT = /is the cgroup v2 root/;

  test('every spelling of the root is refused', () => {
    for (const spelling of [
      m,
      `${m}/`,
      `${m}//`,
      `${m}/.`,
      `${m}/./`,
      `${m}/x/..`,
      `${m}/x/../`,
      `${m}/x/y/../../`,
      `${m}/../${m.split('/').at(-1)}`,
      '/',
      '//',
      '',
      '.',
      './',
      '/x/../',
      '/./',
    ]) {
      refused(spelling, view, ROOT);
    }
  });

  test('paths leading out of the hierarchy are refused', () => {
    refused(`${m}/..`, view, /not below the cgroup v2 mount/);
    refused(`${m}/x/../../etc`, view, /not below the cgroup v2 mount/);
    refused('../../etc', view, /not below the cgroup v2 mount/);
    refused('/tmp', view, /outside the cgroup v2 mount/);
  });

  test('a symlink to the root, or into the hierarchy, is refused by where it leads', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmesh-guard-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    symlinkSync(m, join(dir, 'root'));
    refused(join(dir, 'root'), view, ROOT);
    refused(`${join(dir, 'root')}/`, view, ROOT);
    symlinkSync(join(m, 'cgroup.procs'), join(dir, 'file'));
    refused(join(dir, 'file'), view, /written outside/);
  });

  test('a file of the hierarchy is not a cgroup', () => {
    refused(`${m}/cgroup.procs`, view, /not a directory/);
    refused('/cgroup.procs', view, /not a directory/);
  });

  test('a cgroup below the root is accepted, also before it exists, in both forms', () => {
    assert.equal(guardCgroupPath(`${m}/system.slice/orders.service/`, view), `${m}/system.slice/orders.service`);
    assert.equal(guardCgroupPath('/system.slice/orders.service', view), `${m}/system.slice/orders.service`);
  });

  test('the mount is chosen by the root it shows: a namespace mount over a bind of a subtree', () => {
    const info = [
      '41 31 0:38 /.. /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
      '90 41 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw',
      '91 41 0:38 /x /mnt/x rw - cgroup2 cgroup2 rw',
    ].join('\n');
    assert.equal(findCgroup2Mount(info), '/sys/fs/cgroup/unified');
    assert.equal(findCgroup2Mount('41 31 0:38 /.. /cg rw - cgroup2 cgroup2 rw'), '/cg');
    assert.throws(() => findCgroup2Mount('31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw'), /no cgroup v2/);
  });
});

describe('a hierarchy made in a temporary directory (symlinks are possible there)', () => {
  const base = mkdtempSync(join(tmpdir(), 'kmesh-guard-'));
  after(() => rmSync(base, { recursive: true, force: true }));
  const h = join(base, 'h');
  mkdirSync(join(h, 'svc', 'inner'), { recursive: true });
  mkdirSync(join(base, 'elsewhere'));
  writeFileSync(join(h, 'plain-file'), '');
  symlinkSync(h, join(h, 'to-root'));
  symlinkSync('..', join(h, 'svc', 'up'));
  symlinkSync(join(base, 'elsewhere'), join(h, 'out'));
  symlinkSync(join(h, 'svc'), join(h, 'to-svc'));
  const st = statSync(h, { bigint: true });
  const view: Cgroup2View = { mount: h, realMount: h, dev: st.dev, rootInos: new Set([st.ino]) };

  test('a symlink to the root, at any depth, is the root', () => {
    refused(join(h, 'to-root'), view, /is the cgroup v2 root/);
    refused(`${join(h, 'to-root')}/`, view, /is the cgroup v2 root/);
    refused(join(h, 'svc', 'up'), view, /is the cgroup v2 root/);
    refused('/to-root', view, /is the cgroup v2 root/);
  });

  test('a symlink leading out, or an ancestor that does, is outside', () => {
    refused(join(h, 'out'), view, /outside the cgroup v2 mount/);
    refused(join(h, 'out', 'not-yet', 'x'), view, /outside the cgroup v2 mount/);
    refused('/out/x', view, /outside the cgroup v2 mount/);
  });

  test('a directory on another file system is not a cgroup', () => {
    const otherDev = { ...view, dev: view.dev + 1n };
    refused(join(h, 'svc'), otherDev, /not on the cgroup v2 file system/);
  });

  test('real cgroups below the root pass; a symlink inside resolves to its target', () => {
    assert.equal(guardCgroupPath(join(h, 'svc', 'inner'), view), join(h, 'svc', 'inner'));
    assert.equal(guardCgroupPath('/svc/', view), join(h, 'svc'));
    assert.equal(guardCgroupPath(join(h, 'to-svc'), view), join(h, 'to-svc'));
    assert.equal(guardCgroupPath(join(h, 'not-yet', 'x'), view), join(h, 'not-yet', 'x'));
  });

  test('at attach, the opened directory is checked: whatever path opened the root, it is refused', () => {
    for (const path of [h, `${h}/`, join(h, 'to-root'), join(h, 'svc', 'up'), join(h, 'svc', '..')]) {
      const fd = openSync(path, constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        assert.throws(() => guardCgroupFd(fd, path, view), /is the cgroup v2 root/, path);
      } finally {
        closeSync(fd);
      }
    }
    const out = openSync(join(h, 'out'), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      assert.throws(() => guardCgroupFd(out, join(h, 'out'), view), /outside the cgroup v2 mount/);
    } finally {
      closeSync(out);
    }
    const svc = openSync(join(h, 'to-svc'), constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      assert.equal(guardCgroupFd(svc, join(h, 'to-svc'), view), statSync(join(h, 'svc'), { bigint: true }).ino);
    } finally {
      closeSync(svc);
    }
  });

  test('[[services]] cgroup in kmesh.toml: the root is refused with file, line and key', () => {
    const source = '[[services]]\ncgroup = "/svc"\n[[services]]\ncgroup = "/svc/up/"\n';
    assert.throws(
      () => parseConfig(source, '/etc/kmesh/kmesh.toml', { cgroups: view }),
      (err: Error) =>
        err.message ===
        `kmesh.toml:4: services[1].cgroup: refusing cgroup /svc/up/: it is the cgroup v2 root (${h}), which holds every process; register a service's own cgroup`,
    );
  });
});
