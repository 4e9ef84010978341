import { join } from 'node:path';
import { packageRoot } from '../contracts/package.js';

/** Compiled BPF objects; KMESH_BPF_DIR overrides for packaged layouts. */
export function bpfObjectDir(): string {
  return process.env.KMESH_BPF_DIR ?? join(packageRoot, 'build', 'bpf');
}

export const pinPaths = (pinDir: string) => ({ maps: join(pinDir, 'maps'), links: join(pinDir, 'links') });
