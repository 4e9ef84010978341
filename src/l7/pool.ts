/**
 * Pre-connected upstream sockets of one endpoint, for the first requests of L7
 * connections. The kernel takes a ready socket without asking (kmesh_l7_pool in
 * bpf/kmesh_l7.bpf.c); this keeps `depth` of them ready.
 *
 * Slot i of the pool is ready while bit i of `filled` (written here only) differs from
 * bit i of `taken` (flipped by the programs only). A socket is made ready by putting it
 * in kmesh_l7_upstreams and its tuple in the slot, then flipping filled. Once the
 * programs take it, it belongs to its client connection (ConnectionTable).
 */
import { connect, type Socket } from 'node:net';
import type { BpfMap } from '../runtime/bpf-map.js';
import { L7_POOL_SLOTS, l7PoolTaken, tupleKey } from './layouts.js';

export interface PoolMaps {
  upstreams: BpfMap;
  slots: BpfMap;
  filled: BpfMap;
  taken: BpfMap;
}

export interface PoolEvents {
  /**
   * A socket the kernel took: it now carries a client's connection. False while the program
   * that took it has not yet recorded its client (asked again on the next pass); `giveUp`:
   * that never happened (its redirect failed), close it.
   */
  adopted(socket: Socket, key: Buffer, giveUp: boolean): boolean;
  /**
   * A connect failed and the pool backs off. `cause`: the endpoint refused or could not be
   * reached, the pool's connect timeout passed, or the daemon could not pool the socket.
   */
  connectFailed(pool: UpstreamPool, err: Error, cause: ConnectFailure): void;
  /** A connect succeeded after `failures` failed in a row. */
  recovered(pool: UpstreamPool, failures: number): void;
}

/** The fd under a connected net.Socket (Linux, TCP). */
export function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
  return fd;
}

export function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64Value(n: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
}

const TAKEN_OFFSET = l7PoolTaken.offsetOf('taken');
/**
 * Back-off after failed connects (endpoint down), doubling from the first to the last, so a dead
 * endpoint is not hammered; while failing, one connect at a time (a probe) instead of the depth.
 */
const RETRY_MS = 200;
const MAX_RETRY_MS = 5000;

export type ConnectFailure = 'endpoint' | 'timeout' | 'local';

/** What the kernel's rule counts as the endpoint's failure (as the L4 sockops program: refused, unreachable, timed out). */
export function connectFailure(err: Error): ConnectFailure {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ETIMEDOUT') return 'timeout';
  return code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH' ? 'endpoint' : 'local';
}
export interface DialFailure {
  err: Error;
  cause: ConnectFailure;
}

/**
 * Connects to an endpoint (a pool's socket, a slow-path upstream). `settled` runs once: without a failure when
 * connected, else with why — refused or unreachable, `timeoutMs` passed (the cluster's connect_timeout), or a
 * local error; the caller destroys the socket then. Errors after the connect are the caller's to handle.
 */
export function dialEndpoint(
  endpoint: { address: string; port: number },
  timeoutMs: number | undefined,
  settled: (failure?: DialFailure) => void,
): Socket {
  const socket = connect({ host: endpoint.address, port: endpoint.port, allowHalfOpen: true, noDelay: true });
  const done = (failure?: DialFailure) => {
    clearTimeout(timer);
    socket.off('error', onError);
    socket.off('connect', onConnect);
    settled(failure);
  };
  const onError = (err: Error) => done({ err, cause: connectFailure(err) });
  const onConnect = () => done();
  const timer =
    timeoutMs === undefined
      ? undefined
      : setTimeout(
          () => done({ err: new Error(`connect timed out after ${timeoutMs} ms`), cause: 'timeout' }),
          timeoutMs,
        );
  socket.once('error', onError);
  socket.once('connect', onConnect);
  return socket;
}

/** A taken socket whose client is still not recorded after this was not taken by a redirect that worked. */
const CLAIM_MS = 1000;

export class UpstreamPool {
  private readonly sockets: Array<{ socket: Socket; key: Buffer; takenAt?: number } | undefined> = new Array(
    L7_POOL_SLOTS,
  );
  private readonly connecting = new Set<number>();
  private filled: bigint;
  private closed = false;
  private retryAt = 0;
  /** Connects failed in a row (0: healthy). */
  private failures = 0;
  /** No connect has succeeded yet: probe with one before connecting the depth. */
  private untried = true;
  /** Sockets connected (pool refills), for metrics. */
  connects = 0;
  /** Given up on a connect after this (the smallest connect_timeout of its clusters); undefined: the kernel's. */
  connectTimeoutMs: number | undefined;

  constructor(
    readonly id: number,
    readonly address: string,
    readonly port: number,
    private readonly depth: number,
    private readonly maps: PoolMaps,
    private readonly events: PoolEvents,
  ) {
    // A reused id may have bits the programs flipped: start with nothing ready.
    this.filled = this.readTaken();
    this.writeFilled();
  }

  private readTaken(): bigint {
    const v = this.maps.taken.lookup(u32Key(this.id));
    return v ? v.readBigUInt64LE(TAKEN_OFFSET) : 0n;
  }

  private writeFilled(): void {
    this.maps.filled.update(u32Key(this.id), u64Value(this.filled));
  }

  /** Hand over taken sockets and connect new ones up to the depth. */
  refill(): void {
    if (this.closed) return;
    const ready = this.filled ^ this.readTaken();
    let readyCount = 0;
    for (let slot = 0; slot < L7_POOL_SLOTS; slot++) {
      const entry = this.sockets[slot];
      if (!entry) continue;
      if (ready & (1n << BigInt(slot))) readyCount++;
      else this.handOver(slot, entry);
    }
    if (Date.now() < this.retryAt) return;
    let want =
      this.failures > 0 || this.untried ? 1 - this.connecting.size : this.depth - readyCount - this.connecting.size;
    for (let slot = 0; slot < L7_POOL_SLOTS && want > 0; slot++) {
      if (this.sockets[slot] || this.connecting.has(slot)) continue;
      this.connectSlot(slot);
      want--;
    }
  }

  /** A taken socket goes to its client once the program recorded which client that is. */
  private handOver(slot: number, entry: { socket: Socket; key: Buffer; takenAt?: number }): void {
    entry.takenAt ??= Date.now();
    if (this.events.adopted(entry.socket, entry.key, Date.now() - entry.takenAt > CLAIM_MS))
      this.sockets[slot] = undefined;
  }

  private connectSlot(slot: number): void {
    this.connecting.add(slot);
    const fail = (err: Error, cause: ConnectFailure) => {
      this.connecting.delete(slot);
      this.failures++;
      this.retryAt = Date.now() + Math.min(MAX_RETRY_MS, RETRY_MS * 2 ** Math.min(this.failures - 1, 5));
      socket.destroy();
      // a pool withdrawn meanwhile says nothing about the endpoint any more
      if (!this.closed) this.events.connectFailed(this, err, cause);
    };
    const socket = dialEndpoint(this, this.connectTimeoutMs, (failure) => {
      if (failure) {
        fail(failure.err, failure.cause);
        return;
      }
      this.connecting.delete(slot);
      this.connects++;
      if (this.failures > 0 && !this.closed) this.events.recovered(this, this.failures);
      const probing = this.untried || this.failures > 0;
      this.failures = 0;
      this.untried = false;
      if (this.closed) {
        socket.destroy();
        return;
      }
      const key = tupleKey(socket.localAddress ?? '', socket.localPort ?? 0, socket.remoteAddress ?? '', this.port);
      try {
        const fd = Buffer.alloc(8);
        fd.writeUInt32LE(socketFd(socket));
        this.maps.upstreams.update(key, fd);
        this.maps.slots.update(u32Key(this.id * L7_POOL_SLOTS + slot), key);
      } catch (err) {
        fail(err as Error, 'local');
        return;
      }
      this.sockets[slot] = { socket, key };
      this.filled ^= 1n << BigInt(slot);
      this.writeFilled();
      // An idle pooled socket the server closes is replaced; one the kernel took is its client's.
      const dropIfIdle = () => this.dropIfIdle(slot, socket);
      socket.on('end', dropIfIdle);
      socket.on('close', dropIfIdle);
      socket.on('error', () => {});
      // the probe got through: connect the rest now
      if (probing) this.refill();
    });
  }

  private dropIfIdle(slot: number, socket: Socket): void {
    const entry = this.sockets[slot];
    if (entry?.socket !== socket || this.closed) return;
    const bit = 1n << BigInt(slot);
    if ((this.filled ^ this.readTaken()) & bit) {
      // Still ready: withdraw it. Should the programs take it meanwhile, their redirect
      // finds no socket and they move on to the next endpoint.
      this.filled ^= bit;
      this.writeFilled();
      this.maps.upstreams.delete(entry.key);
      this.sockets[slot] = undefined;
      socket.destroy();
    } else {
      this.handOver(slot, entry);
    }
  }

  /** Connects failed in a row now (0: the last one worked). */
  get failing(): number {
    return this.failures;
  }

  /** Ready sockets now. */
  readyCount(): number {
    return this.sockets.filter(Boolean).length;
  }

  /** Every socket it holds (for systemd's store at a stop). */
  fds(): number[] {
    return this.sockets.flatMap((entry) => (entry && !entry.socket.destroyed ? [socketFd(entry.socket)] : []));
  }

  /**
   * Closes its sockets here and leaves the kernel's view as it is: they were handed to systemd's store, ready
   * ones keep serving first requests until the next daemon takes them back.
   */
  release(): void {
    this.closed = true;
    for (const [slot, entry] of this.sockets.entries()) {
      this.sockets[slot] = undefined;
      entry?.socket.destroy();
    }
  }

  /** Withdraws every ready socket (the endpoint left the config). */
  close(): void {
    this.closed = true;
    this.filled = this.readTaken();
    this.writeFilled();
    for (const [slot, entry] of this.sockets.entries()) {
      if (!entry) continue;
      this.sockets[slot] = undefined;
      this.maps.upstreams.delete(entry.key);
      entry.socket.destroy();
    }
  }
}
