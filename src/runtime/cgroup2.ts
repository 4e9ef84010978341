import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';

/** The cgroup v2 mount point, whether the host runs the unified or the hybrid hierarchy. */
export function findCgroup2Mount(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): string {
  for (const line of mountinfo.split('\n')) {
    // mountinfo: id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fsType = line.slice(sep + 3).split(' ')[0];
    if (fsType !== 'cgroup2') continue;
    const mountPoint = line.slice(0, sep).split(' ')[4];
    if (mountPoint) return mountPoint.replace(/\\040/g, ' ');
  }
  throw new Error('no cgroup v2 hierarchy is mounted (looked in /proc/self/mountinfo)');
}

/** A cgroup path as configured: absolute under the mount, or relative to it (systemd's ControlGroup form). */
export function resolveCgroupPath(path: string, mount: string): string {
  const full = path.startsWith(`${mount}/`) || path === mount ? path : join(mount, path);
  const clean = normalize(full);
  if (!isAbsolute(clean) || !(clean === mount || clean.startsWith(`${mount}/`))) {
    throw new Error(`cgroup ${path} is not below the cgroup v2 mount ${mount}`);
  }
  return clean;
}

/** The cgroup id the kernel reports (bpf_get_current_cgroup_id) is the directory's inode number. */
export function cgroupId(path: string): bigint {
  return statSync(path, { bigint: true }).ino;
}
