// Smallest guest program: proves node runs in the guest and the result line reaches the host.
import { readFileSync } from 'node:fs';
import { release } from 'node:os';

const btf = (() => {
  try {
    readFileSync('/sys/kernel/btf/vmlinux', { flag: 'r' });
    return true;
  } catch {
    return false;
  }
})();
process.stdout.write(`KMESH-RESULT ${JSON.stringify({ kernel: release(), node: process.version, btf })}\n`);
