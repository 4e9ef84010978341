/**
 * The L7 sockets across daemon restarts, in systemd's file-descriptor store (FileDescriptorStoreMax= in
 * kmesh.service). The anchor listener is stored once it listens and stays stored: while no daemon runs (a
 * restart, a crash before systemd restarts it) the kernel keeps completing handshakes into its backlog, so no
 * new connection is refused, and connect4 keeps handing connections to it (it sees a listener). At a stop the
 * daemon stores every socket that carries or can carry a client's connection (accepted, upstream, pooled):
 * the kernel keeps moving their bytes, and the next daemon takes them back (LISTEN_FDS / LISTEN_FDNAMES) and
 * has systemd drop its copies, so that closing them closes them again. Outside systemd (no $NOTIFY_SOCKET)
 * nothing is stored: a stop closes the L7 connections, and connect4 sends new ones to the listener's default
 * route while no anchor listens.
 */
import type { LibraryHandle } from 'koffi';
import { libsystemd } from '../runtime/libsystemd.js';

export const ANCHOR_FDNAME = 'kmesh-l7-anchor';
export const CONN_FDNAME = 'kmesh-l7-conn';
/** The kernel passes at most 253 fds per message (SCM_MAX_FD). */
const FDS_PER_MESSAGE = 250;
/** sd_listen_fds(3): passed fds start here. */
const LISTEN_FDS_START = 3;

type Sender = { send(state: string, fds: number[]): boolean; barrier(): void };
let sender: Sender | null | undefined;
/** How long a stopping daemon waits for systemd to have taken its fds. */
const BARRIER_US = 5_000_000;

/**
 * sd_pid_notify_with_fds(3) from libsystemd (src/runtime/libsystemd.ts, as src/controller/sd-notify.ts sends its states): the
 * fds go with the message by SCM_RIGHTS, from the main pid (NotifyAccess=main). Null without $NOTIFY_SOCKET or
 * libsystemd.
 */
function loadSender(): Sender | null {
  const lib = process.env.NOTIFY_SOCKET ? libsystemd() : null;
  if (!lib) return null;
  try {
    const send = lib.func(
      'int sd_pid_notify_with_fds(int pid, int unset_environment, const char *state, const int *fds, unsigned int n_fds)',
    );
    return {
      send: (state, fds) => (send(0, 0, state, Int32Array.from(fds), fds.length) as number) > 0,
      barrier: loadBarrier(lib),
    };
  } catch {
    return null;
  }
}

/** sd_notify_barrier(3) (libsystemd ≥ 246): returns once systemd has read every message sent before it. */
function loadBarrier(lib: LibraryHandle): () => void {
  try {
    const barrier = lib.func('int sd_notify_barrier(int unset_environment, uint64_t timeout)');
    return () => barrier(0, BARRIER_US);
  } catch {
    return () => {};
  }
}

function notify(state: string, fds: number[] = []): boolean {
  if (sender === undefined) sender = loadSender();
  return sender ? sender.send(state, fds) : false;
}

export interface InheritedFd {
  fd: number;
  name: string;
}

/** The fds systemd passed to this process, by name; taken once (the variables are removed, as sd_listen_fds(1) does). */
export function takeInheritedFds(env: NodeJS.ProcessEnv = process.env): InheritedFd[] {
  const pid = Number(env.LISTEN_PID);
  const count = Number(env.LISTEN_FDS);
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (pid !== process.pid || !Number.isInteger(count) || count <= 0) return [];
  return Array.from({ length: count }, (_, i) => ({ fd: LISTEN_FDS_START + i, name: names[i] ?? '' }));
}

/** Under systemd with a store to use ($FDSTORE, set by systemd ≥ 254, is its size; older ones do not say). */
export function fdStoreAvailable(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.NOTIFY_SOCKET) && env.FDSTORE !== '0';
}

/**
 * FDSTORE=1 under one name; false when systemd could not be told (then nothing can be relied on). `beforeExit`:
 * waits until systemd has read them (a message still queued when the process is gone may not be attributed
 * to the service any more).
 */
export function storeFds(name: string, fds: number[], beforeExit = false): boolean {
  for (let i = 0; i < fds.length; i += FDS_PER_MESSAGE) {
    if (!notify(`FDSTORE=1\nFDNAME=${name}`, fds.slice(i, i + FDS_PER_MESSAGE))) return false;
  }
  if (beforeExit) sender?.barrier();
  return true;
}

/** systemd closes its copies of the fds stored under `name`. */
export function dropStoredFds(name: string): boolean {
  return notify(`FDSTOREREMOVE=1\nFDNAME=${name}`);
}
