/** The real kmesh-daemon binary as a child process: started until "ready", stopped by its pid. */
import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DAEMON_ENV, DAEMON_NODE_FLAGS } from '../../../src/controller/node-flags.js';

export const DAEMON = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'src', 'bin', 'kmesh-daemon.js');

export interface DaemonProcess {
  child: ChildProcess;
  /** Everything it wrote to stdout so far (JSON log lines at the config's log_level). */
  output(): string;
  /** Resolves once a stdout line matches (already written ones count). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM (or `signal`) and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** The config must log at info or lower: readiness is the "kmesh-daemon ready" line. */
export async function spawnDaemon(configPath: string, env: Record<string, string> = {}): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, DAEMON, '--config', configPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...DAEMON_ENV, ...env }, // as the launcher runs it
  });
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (chunk) => {
    out += chunk;
    for (const w of waiters) w();
  });
  child.stderr?.on('data', (chunk) => {
    err += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitFor = (pattern: RegExp, timeoutMs = 15_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const line = out.split('\n').find((l) => pattern.test(l));
        if (line !== undefined) done(() => resolve(line));
        else if (child.exitCode !== null)
          done(() => reject(new Error(`daemon exited ${child.exitCode}: ${out}${err}`)));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms: ${out}${err}`))),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        waiters.delete(check);
        settle();
      };
      waiters.add(check);
      void exited.then(check);
      check();
    });
  const handle: DaemonProcess = {
    child,
    output: () => out,
    waitFor,
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  try {
    await waitFor(/kmesh-daemon ready/);
  } catch (e) {
    await handle.stop('SIGKILL');
    throw e;
  }
  return handle;
}
