import { fstatSync, lstatSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';

interface Cgroup2Mount {
  /** The mount point, as the daemon sees it. */
  mountPoint: string;
  /** Which directory of the hierarchy is mounted there ("/" = the root of the daemon's cgroup namespace). */
  root: string;
}

function cgroup2Mounts(mountinfo: string): Cgroup2Mount[] {
  const mounts: Cgroup2Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    // mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    if (line.slice(sep + 3).split(' ')[0] !== 'cgroup2') continue;
    const fields = line.slice(0, sep).split(' ');
    const decode = (s: string) => s.replace(/\\040/g, ' ');
    if (fields[4]) mounts.push({ mountPoint: decode(fields[4]), root: decode(fields[3] ?? '') });
  }
  return mounts;
}

/**
 * The cgroup v2 mount point, whether the host runs the unified or the hybrid hierarchy. A mount of the
 * namespace's root is preferred over a bind mount of a subtree (or a mount from outside this cgroup namespace).
 */
export function findCgroup2Mount(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string {
  const mounts = cgroup2Mounts(mountinfo);
  const chosen = mounts.filter((m) => m.root === '/').at(-1) ?? mounts[0];
  if (!chosen) throw new Error('no cgroup v2 hierarchy is mounted (looked in /proc/self/mountinfo)');
  return chosen.mountPoint;
}

/**
 * The cgroup v2 hierarchy as this process sees it, identified by file system and inode rather than by
 * spelling: a cgroup is the root when its directory is the mount's directory, however the path was written.
 */
export interface Cgroup2View {
  mount: string;
  /** The mount point with symlinks resolved; a cgroup's real path must lie below it. */
  realMount: string;
  /** st_dev of the cgroup2 file system: a directory with another device is not a cgroup. */
  dev: bigint;
  /** st_ino of the root directory of every cgroup2 mount visible here: never attached to. */
  rootInos: ReadonlySet<bigint>;
}

export function cgroup2View(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): Cgroup2View {
  const mount = findCgroup2Mount(mountinfo);
  const st = statSync(mount, { bigint: true });
  const rootInos = new Set<bigint>([st.ino]);
  for (const other of cgroup2Mounts(mountinfo)) {
    if (other.root !== '/') continue;
    try {
      const o = statSync(other.mountPoint, { bigint: true });
      if (o.dev === st.dev) rootInos.add(o.ino);
    } catch {
      /* hidden or gone: not reachable through a path either */
    }
  }
  return { mount, realMount: realpathSync(mount), dev: st.dev, rootInos };
}

/**
 * A cgroup path as configured: absolute under the mount, or relative to it (systemd's ControlGroup form,
 * where "/" is the root). Lexical only, trailing slashes dropped; `guardCgroupPath` decides by identity.
 */
export function resolveCgroupPath(path: string, mount: string): string {
  const full = path === mount || path.startsWith(`${mount}/`) ? path : join(mount, path);
  const clean = normalize(full).replace(/(?<=.)\/+$/, '');
  if (!isAbsolute(clean) || !(clean === mount || clean.startsWith(`${mount}/`))) {
    throw new CgroupRefused(`cgroup ${path} is not below the cgroup v2 mount ${mount}`);
  }
  return clean;
}

/** A cgroup that must never get programs: the root, outside the hierarchy, or not a cgroup directory. */
export class CgroupRefused extends Error {
  override name = 'CgroupRefused';
}

const rootRefusal = (path: string, view: Cgroup2View) =>
  new CgroupRefused(
    `refusing cgroup ${path}: it is the cgroup v2 root (${view.mount}), which holds every process; register a service's own cgroup`,
  );

function checkIdentity(path: string, st: { dev: bigint; ino: bigint; isDirectory(): boolean }, view: Cgroup2View) {
  if (!st.isDirectory()) throw new CgroupRefused(`refusing cgroup ${path}: not a directory`);
  if (st.dev !== view.dev) {
    throw new CgroupRefused(`refusing cgroup ${path}: not on the cgroup v2 file system mounted at ${view.mount}`);
  }
  if (view.rootInos.has(st.ino)) throw rootRefusal(path, view);
}

function checkInside(path: string, real: string, view: Cgroup2View): void {
  if (real === view.realMount) throw rootRefusal(path, view);
  if (!real.startsWith(`${view.realMount}/`)) {
    throw new CgroupRefused(
      `refusing cgroup ${path}: it resolves to ${real}, outside the cgroup v2 mount ${view.mount}`,
    );
  }
}

/**
 * The registration check: the resolved path, or CgroupRefused. A cgroup that does not exist yet is
 * accepted (a unit not started yet) when its nearest existing ancestor lies inside the hierarchy; the
 * directory itself is checked again on the opened fd at attach (`guardCgroupFd`).
 */
export function guardCgroupPath(path: string, view: Cgroup2View): string {
  if (writtenOutside(path, view)) {
    // A real path elsewhere (a symlink, say), not systemd's mount-relative form: judged by where it leads.
    const real = realpathSync(path);
    checkInside(path, real, view);
    throw new CgroupRefused(`refusing cgroup ${path}: it is written outside ${view.mount}; write it as ${real}`);
  }
  const resolved = resolveCgroupPath(path, view.mount);
  if (resolved === view.mount) throw rootRefusal(path, view);
  let existing = resolved;
  for (;;) {
    try {
      const real = realpathSync(existing);
      checkInside(path, existing === resolved ? real : join(real, '_'), view);
      if (existing === resolved) checkIdentity(path, statSync(real, { bigint: true }), view);
      return resolved;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw err;
      existing = dirname(existing);
    }
  }
}

function writtenOutside(path: string, view: Cgroup2View): boolean {
  if (!isAbsolute(path) || normalize(path) === '/' || path === view.mount || path.startsWith(`${view.mount}/`)) {
    return false;
  }
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The attach check, on the directory fd about to get programs: no rename, symlink or re-mount between
 * the check and the attach can change what it is. Returns the cgroup id (the directory's inode).
 */
export function guardCgroupFd(fd: number, path: string, view: Cgroup2View): bigint {
  const st = fstatSync(fd, { bigint: true });
  checkIdentity(path, st, view);
  checkInside(path, readlinkSync(`/proc/self/fd/${fd}`), view);
  return st.ino;
}

/** The cgroup id the kernel reports (bpf_get_current_cgroup_id) is the directory's inode number. */
export function cgroupId(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}
