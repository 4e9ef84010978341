/**
 * A test run that was killed (timeout, Ctrl-C) cannot run its after-hooks; the next run
 * removes what such runs left: pins and cgroups named kmesh-test-<pid>-… whose pid is gone.
 */
import { readdirSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { cleanupPins } from '../../../src/controller/cleanup.js';
import { findCgroup2Mount } from '../../../src/runtime/cgroup2.js';

const STALE = /^kmesh-test-(\d+)-/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function staleEntries(dir: string): string[] {
  try {
    return readdirSync(dir).filter((name) => {
      const pid = Number(STALE.exec(name)?.[1] ?? Number.NaN);
      return Number.isInteger(pid) && !alive(pid);
    });
  } catch {
    return [];
  }
}

export function sweepStaleTestState(): void {
  for (const name of staleEntries('/sys/fs/bpf')) cleanupPins(join('/sys/fs/bpf', name));
  const mount = findCgroup2Mount();
  for (const name of staleEntries(mount)) {
    try {
      rmdirSync(join(mount, name));
    } catch {
      /* still has processes: left for its owner */
    }
  }
}
