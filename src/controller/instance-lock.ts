/**
 * One daemon per pin directory: two would fight over the same maps. The lock is a pid
 * file; a stale one (its process gone) is taken over.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KmeshError } from '../contracts/errors.js';

const LOCK_DIR = process.env.KMESH_RUN_DIR ?? '/run/kmesh';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function acquireInstanceLock(pinDir: string): () => void {
  mkdirSync(LOCK_DIR, { recursive: true });
  const path = join(LOCK_DIR, `${pinDir.replace(/[^\w.-]+/g, '_')}.pid`);
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    if (pid && pid !== process.pid && alive(pid)) {
      throw new KmeshError(
        'AlreadyExists',
        `another kmesh-daemon (pid ${pid}) already manages ${pinDir} (lock ${path})`,
      );
    }
  } catch (err) {
    if (err instanceof KmeshError) throw err;
  }
  writeFileSync(path, `${process.pid}\n`);
  return () => rmSync(path, { force: true });
}
