import { existsSync, readdirSync, rmdirSync, type Stats, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { isPinDir } from '../runtime/bpffs.js';
import { isLinkDirName } from '../runtime/cgroup-links.js';
import { pinPaths } from './paths.js';

export interface CleanupResult {
  /** Pins (maps and links) removed. */
  removed: number;
  /** Entries found in the pin directory that Kmesh did not make: left where they are. */
  foreign: string[];
}

/**
 * Detach everything Kmesh attached (links first, so no program runs against half-removed maps), then
 * unpin its maps. Only Kmesh's own layout is removed — links/cg-<cgroup id>/<program> and maps/<map>;
 * anything else someone put there is left and reported, and the directories holding it stay.
 */
export function cleanupPins(pinDir: string): CleanupResult {
  if (!isPinDir(pinDir)) throw new Error(`refusing to clean up ${pinDir}: not a plain directory below /sys/fs/bpf/`);
  const result: CleanupResult = { removed: 0, foreign: [] };
  if (!existsSync(pinDir)) return result;
  const pins = pinPaths(pinDir);
  for (const name of entries(pins.links)) {
    const dir = join(pins.links, name);
    const isDir = statIfThere(dir)?.isDirectory();
    if (isDir === undefined) continue;
    if (isLinkDirName(name) && isDir) removePinsIn(dir, result);
    else result.foreign.push(dir);
  }
  removePinsIn(pins.maps, result);
  const own = new Set(Object.values(pins));
  for (const name of entries(pinDir)) {
    if (!own.has(join(pinDir, name))) result.foreign.push(join(pinDir, name));
  }
  for (const dir of [...own, pinDir]) removeIfEmpty(dir);
  return result;
}

const entries = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir) : []);

/** Pinned objects are files in bpffs; a directory among them is not Kmesh's. */
function removePinsIn(dir: string, result: CleanupResult): void {
  for (const name of entries(dir)) {
    const path = join(dir, name);
    const st = statIfThere(path);
    if (st === undefined) continue;
    if (st.isDirectory()) {
      result.foreign.push(path);
      continue;
    }
    try {
      unlinkSync(path);
      result.removed++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  removeIfEmpty(dir);
}

/** A pin can go between listing and removing it (a daemon detaching as it stops): then it is already gone. */
function statIfThere(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function removeIfEmpty(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTEMPTY') throw err;
  }
}
