import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { posix } from 'node:path';

const BPF_FS_ROOT = '/sys/fs/bpf';

function isBpffsMounted(path: string): boolean {
  return readFileSync('/proc/self/mounts', 'utf8')
    .split('\n')
    .some((line) => {
      const [, mountPoint, fsType] = line.split(' ');
      return mountPoint === path && fsType === 'bpf';
    });
}

/**
 * A pin directory is a real directory strictly below /sys/fs/bpf, spelled plainly: no
 * "..", no trailing slash. `--cleanup` deletes it recursively, so this is a safety check.
 */
export function isPinDir(path: string): boolean {
  return posix.normalize(path) === path && path.startsWith(`${BPF_FS_ROOT}/`) && !path.endsWith('/');
}

/** Pins need a bpffs; mount it at /sys/fs/bpf when the host has not. */
export function ensureBpffs(pinDir: string): void {
  if (!isPinDir(pinDir)) throw new Error(`pin directory ${pinDir} must be a plain path below ${BPF_FS_ROOT}/`);
  if (isBpffsMounted(BPF_FS_ROOT)) return;
  try {
    execFileSync('mount', ['-t', 'bpf', 'bpf', BPF_FS_ROOT], { stdio: 'pipe' });
  } catch (err) {
    const detail = (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
    throw new Error(`bpffs is not mounted at ${BPF_FS_ROOT} and mounting it failed: ${detail}`);
  }
}
