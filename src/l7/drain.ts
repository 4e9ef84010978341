/**
 * Drain markers: the upstream→client bytes the kernel redirects reach the client through
 * its socket's backlog (a kernel work item that may run many milliseconds later on a busy
 * machine), while the upstream's FIN reaches the daemon at once. Passing the FIN on before
 * that work ran makes the client see EOF ahead of the response's tail ("socket hang up").
 *
 * So before the anchor passes an upstream FIN on, it queues a marker behind those bytes:
 * the client goes into kmesh_l7_marker_ring, MARKER_LEN bytes go through the marker socket
 * pair, and kmesh_l7_marker_verdict (bpf/kmesh_l7.bpf.c) redirects them out of that
 * client's socket, through the same backlog, to the anchor. When they arrive every earlier
 * byte is in the client's receive queue. See docs/l7.md (closes).
 */
import { randomBytes } from 'node:crypto';
import { L7_MARKER_LEN as MARKER_LEN, L7_MARKER_RING as MARKER_RING } from '../abi/kernel.js';
import type { BpfMap } from '../runtime/bpf-map.js';
import { u32Key } from './pool.js';
import { openVerdictSocket, type VerdictSocket } from './verdict-socket.js';

export interface DrainMaps {
  markers: BpfMap;
  ring: BpfMap;
  head: BpfMap;
}

export class DrainMarkers {
  /** What a marker looks like when it reaches the anchor (random: a client cannot forge it by accident). */
  readonly marker = randomBytes(MARKER_LEN);
  private tail: bigint;
  /** The verdict's head as last read (read again only when the ring looks full). */
  private knownHead: bigint;

  private constructor(
    private readonly maps: DrainMaps,
    private readonly socket: VerdictSocket,
  ) {
    // A previous daemon's markers were consumed or are gone with its socket: start where the verdict is.
    this.tail = this.head();
    this.knownHead = this.tail;
  }

  /** The marker socket goes into kmesh_l7_markers (its verdict runs on what arrives). */
  static async open(maps: DrainMaps, address: string): Promise<DrainMarkers> {
    return new DrainMarkers(maps, await openVerdictSocket(maps.markers, address));
  }

  private head(): bigint {
    return this.maps.head.lookup(u32Key(0))?.readBigUInt64LE(0) ?? 0n;
  }

  /** Queues a marker for the client; false when it cannot (ring full, socket gone): the caller falls back. */
  mark(clientKey: Buffer): boolean {
    if (this.socket.writer.destroyed) return false;
    if (this.tail - this.knownHead >= BigInt(MARKER_RING)) {
      this.knownHead = this.head();
      if (this.tail - this.knownHead >= BigInt(MARKER_RING)) return false;
    }
    this.maps.ring.update(u32Key(Number(this.tail % BigInt(MARKER_RING))), clientKey);
    this.tail++;
    this.socket.writer.write(this.marker);
    return true;
  }

  close(): void {
    this.socket.close();
  }
}

/** Collects what a draining client sends until the marker shows up; true once it has. */
export class MarkerScan {
  private seen = Buffer.alloc(0);

  constructor(private readonly marker: Buffer) {}

  push(chunk: Buffer): boolean {
    // keep only what could still be the start of a marker
    this.seen = Buffer.concat([this.seen.subarray(-(MARKER_LEN - 1)), chunk]);
    return this.seen.includes(this.marker);
  }
}
