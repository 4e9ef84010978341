import { existsSync, rmSync } from 'node:fs';
import { isPinDir } from '../runtime/bpffs.js';
import { pinPaths } from './paths.js';

/** Detach everything (links first, so no program runs against half-removed maps), then unpin maps. */
export function cleanupPins(pinDir: string): { removed: boolean } {
  if (!isPinDir(pinDir)) throw new Error(`refusing to clean up ${pinDir}: not a plain directory below /sys/fs/bpf/`);
  if (!existsSync(pinDir)) return { removed: false };
  const pins = pinPaths(pinDir);
  rmSync(pins.links, { recursive: true, force: true });
  rmSync(pins.maps, { recursive: true, force: true });
  rmSync(pinDir, { recursive: true, force: true });
  return { removed: true };
}
