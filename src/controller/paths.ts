import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root: two levels above dist/src/controller (also in an installed package). */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** Compiled BPF objects; KMESH_BPF_DIR overrides for packaged layouts. */
export function bpfObjectDir(): string {
  return process.env.KMESH_BPF_DIR ?? join(packageRoot, 'build', 'bpf');
}

export const pinPaths = (pinDir: string) => ({ maps: join(pinDir, 'maps'), links: join(pinDir, 'links') });
