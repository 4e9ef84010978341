/** cgroups a test creates (and only those get programs), removed again in every case. */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findCgroup2Mount } from '../../../src/runtime/cgroup2.js';
import { sweepStaleTestState } from './sweep.js';

export interface TestCgroup {
  path: string;
  remove(): void;
}

let counter = 0;
sweepStaleTestState();

export function makeCgroup(label: string): TestCgroup {
  const mount = findCgroup2Mount();
  const path = join(mount, `kmesh-test-${process.pid}-${label}-${counter++}`);
  mkdirSync(path);
  return {
    path,
    remove() {
      if (!existsSync(path)) return;
      // Any process a test left behind is moved out so the directory can go.
      const procs = readFileSync(join(path, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
      for (const pid of procs) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      for (let attempt = 0; attempt < 50; attempt++) {
        try {
          rmdirSync(path);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EBUSY') throw err;
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
        }
      }
    },
  };
}

export function movePid(cgroup: string, pid: number): void {
  writeFileSync(join(cgroup, 'cgroup.procs'), String(pid));
}
