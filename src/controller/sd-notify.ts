/**
 * sd_notify(3) for Type=notify without a native addon.
 *
 * Node cannot send AF_UNIX datagrams, so the message is sent by libsystemd's own sd_notify() through koffi (already
 * a dependency for libbpf). That keeps the sender pid equal to the main pid, which `NotifyAccess=main` requires, and
 * costs no fork per watchdog ping. libsystemd.so.0 is present wherever systemd is PID 1 (systemd depends on it).
 * Fallback when it cannot be loaded: the `systemd-notify` binary with `--pid=<our pid>`; systemd ≥ 246 waits on a
 * barrier so the message is not lost when the helper exits, but the unit then needs `NotifyAccess=all`.
 * Without $NOTIFY_SOCKET (run by hand, in tests) every call is a no-op.
 */
import { spawnSync } from 'node:child_process';
import { libsystemd } from '../runtime/libsystemd.js';

type Sender = (state: string) => boolean;

let sender: Sender | null | undefined;

function loadSender(): Sender | null {
  if (!process.env.NOTIFY_SOCKET) return null;
  const lib = libsystemd();
  if (lib) {
    const sdNotify = lib.func('int sd_notify(int unset_environment, const char *state)');
    // sd_notify returns >0 when sent, 0 when $NOTIFY_SOCKET is unset, <0 (-errno) on failure.
    return (state) => (sdNotify(0, state) as number) > 0;
  }
  return (state) => {
    const args = [`--pid=${process.pid}`, ...state.split('\n').filter((l) => l.length > 0)];
    const r = spawnSync('systemd-notify', args, { stdio: 'ignore', timeout: 5000 });
    return r.status === 0;
  };
}

/** Send a raw notify state (newline-separated KEY=VALUE). Returns false when not under systemd or sending failed. */
export function sdNotify(state: string): boolean {
  if (sender === undefined) sender = loadSender();
  if (sender === null) return false;
  return sender(state);
}

/** STATUS= must be one line; systemd shows it in `systemctl status`. */
function oneLine(status: string): string {
  return status.replace(/[\r\n]+/g, ' ').slice(0, 200);
}

/** READY=1: call only once programs are attached and the config is in the maps. */
export function notifyReady(status: string): boolean {
  return sdNotify(`READY=1\nSTATUS=${oneLine(status)}\nMAINPID=${process.pid}`);
}

export function notifyStatus(status: string): boolean {
  return sdNotify(`STATUS=${oneLine(status)}`);
}

/** RELOADING=1 … READY=1 brackets a SIGHUP reload so `systemctl reload` reports its outcome. */
export function notifyReloading(status = 'reloading configuration'): boolean {
  return sdNotify(`RELOADING=1\nSTATUS=${oneLine(status)}`);
}

export function notifyStopping(status = 'stopping'): boolean {
  return sdNotify(`STOPPING=1\nSTATUS=${oneLine(status)}`);
}

/**
 * The watchdog interval systemd expects, in ms, or null when WatchdogSec is not set for this process
 * (WATCHDOG_PID names another pid when the variable was inherited from a parent).
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== process.pid) return null;
  return Math.floor(usec / 1000);
}

/**
 * Ping WATCHDOG=1 at half the interval systemd asks for. The timer runs on the event loop, so a stuck loop
 * (the failure the watchdog is for) stops the pings and systemd restarts the unit. `healthy`, when given, can
 * withhold a ping. Returns a stop function; the timer is unref'd so it never keeps the process alive.
 */
export function startWatchdog(healthy: () => boolean = () => true): () => void {
  const interval = watchdogIntervalMs();
  if (interval === null) return () => {};
  const timer = setInterval(
    () => {
      if (healthy()) sdNotify('WATCHDOG=1');
    },
    Math.max(100, Math.floor(interval / 2)),
  );
  timer.unref();
  sdNotify('WATCHDOG=1');
  return () => clearInterval(timer);
}

/** For tests: forget the loaded sender so a changed $NOTIFY_SOCKET is picked up. */
export function resetNotifyForTests(): void {
  sender = undefined;
}
