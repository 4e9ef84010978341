/**
 * The compatibility guest's program (run by /init inside qemu, see
 * scripts/kernels/guest-init.sh). Prints exactly one line
 *   KMESH-RESULT {json}
 * with what the host test (test/kernels/kernels.test.ts) asserts. Refuses to run
 * anywhere but in the guest: it mounts, attaches and moves processes between cgroups.
 */
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { checkAll, type ObjectVerdict } from './loadcheck.js';

export interface GuestResult {
  kernel: string;
  node: string;
  env: { btf: boolean; bpffs: boolean; cgroup2: boolean };
  loader: ObjectVerdict[];
  features?: Record<string, { enabled: boolean; reason?: string }>;
  featuresError?: string;
  daemon?: unknown;
  durationsMs: Record<string, number>;
  error?: string;
}

const ROOT = '/kmesh';

function mounted(type: string, path: string): boolean {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .some((l) => {
      const f = l.split(' ');
      return f[1] === path && f[2] === type;
    });
}

async function main(): Promise<void> {
  if (process.env.KMESH_GUEST !== '1') {
    process.stderr.write('test/kernels/guest/main: only runs inside the qemu guest (KMESH_GUEST=1)\n');
    return;
  }
  const t0 = Date.now();
  const result: GuestResult = {
    kernel: release(),
    node: process.version,
    env: {
      btf: existsSync('/sys/kernel/btf/vmlinux'),
      bpffs: mounted('bpf', '/sys/fs/bpf'),
      cgroup2: mounted('cgroup2', '/sys/fs/cgroup'),
    },
    loader: [],
    durationsMs: {},
  };
  try {
    process.stderr.write('KMESH-STEP loader\n');
    let t = Date.now();
    result.loader = checkAll(join(ROOT, 'build/bpf'));
    result.durationsMs.loader = Date.now() - t;

    process.stderr.write('KMESH-STEP features\n');
    t = Date.now();
    try {
      const features = (await import('../../../src/runtime/features.js')) as {
        detectFeatures: () => Record<string, { enabled: boolean; reason?: string }>;
      };
      result.features = features.detectFeatures();
    } catch (err) {
      result.featuresError = (err as Error).message;
    }
    result.durationsMs.features = Date.now() - t;

    t = Date.now();
    const { runDaemonCheck } = await import('./daemon-check.js');
    result.daemon = await runDaemonCheck(ROOT);
    result.durationsMs.daemon = Date.now() - t;
  } catch (err) {
    result.error = (err as Error).stack ?? String(err);
  }
  result.durationsMs.total = Date.now() - t0;
  process.stdout.write(`KMESH-RESULT ${JSON.stringify(result)}\n`, () => process.exit(0));
}

await main();
