/**
 * One daemon per pin directory: two would fight over the same maps, and `--cleanup` must not pull the
 * pins from under a running one. The lock is a pid file; a stale one (its process gone or a zombie) is
 * taken over.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KmeshError } from '../contracts/errors.js';

const lockDir = (): string => process.env.KMESH_RUN_DIR ?? '/run/kmesh';

/** Running: it exists and is not a zombie (exited, waiting for its parent to reap it) or dead. */
export function processRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces and parentheses, the state follows the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

const lockPath = (pinDir: string) => join(lockDir(), `${pinDir.replace(/[^\w.-]+/g, '_')}.pid`);

/** The pid of the running daemon that holds the lock for `pinDir`, if any. */
export function lockHolder(pinDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(lockPath(pinDir), 'utf8').trim());
  } catch {
    return undefined;
  }
  return Number.isInteger(pid) && pid > 0 && pid !== process.pid && processRunning(pid) ? pid : undefined;
}

export function acquireInstanceLock(pinDir: string): () => void {
  const holder = lockHolder(pinDir);
  if (holder !== undefined) {
    throw new KmeshError(
      'AlreadyExists',
      `another kmesh-daemon (pid ${holder}) already manages ${pinDir} (lock ${lockPath(pinDir)})`,
    );
  }
  mkdirSync(lockDir(), { recursive: true });
  const path = lockPath(pinDir);
  writeFileSync(path, `${process.pid}\n`);
  return () => rmSync(path, { force: true });
}
