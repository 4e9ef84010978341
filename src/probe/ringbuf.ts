/**
 * A BPF ring buffer drained from Node's event loop without blocking it.
 *
 * libbpf's ring_buffer__poll would block in epoll_wait, and Node cannot watch an
 * arbitrary fd without a native addon, so a timer calls ring_buffer__consume, which
 * never blocks: it hands every record already in the ring to the sample callback
 * (a koffi-registered JS function, called synchronously on this thread) and returns.
 * Work per turn is bounded by `budget`: the callback stops the drain by returning a
 * negative value (libbpf has already advanced past that record), and the rest is
 * taken on the next turn via setImmediate, so I/O and scrapes interleave with a backlog.
 */
import { copyOut, probeLib, registerSample, unregisterSample } from './ffi.js';

/** Our "budget reached" return value; any negative value stops libbpf's loop. */
const STOP = -1000;

export interface RingBufferOptions {
  /** Timer period while idle, ms. The ring must hold what arrives in one period. */
  intervalMs?: number;
  /** Records handled per event-loop turn before yielding. */
  budget?: number;
}

export class RingBufferConsumer {
  private rb: object | null = null;
  private cb: bigint | null = null;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private inTurn = 0;
  private readonly intervalMs: number;
  private readonly budget: number;
  /** Records delivered to `onRecord`. */
  consumed = 0;
  /** Errors thrown by `onRecord` (the record is skipped, the consumer goes on). */
  handlerErrors = 0;

  constructor(
    private readonly mapFd: number,
    private readonly onRecord: (data: Buffer) => void,
    options: RingBufferOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 20;
    this.budget = options.budget ?? 4096;
  }

  start(): void {
    if (this.rb) return;
    this.cb = registerSample((_ctx, data, size) => this.sample(data, Number(size)));
    const rb = probeLib.ringBufferNew(this.mapFd, this.cb, null, null);
    if (!rb) {
      unregisterSample(this.cb);
      this.cb = null;
      throw new Error(`ring_buffer__new(fd ${this.mapFd}) failed`);
    }
    this.rb = rb;
    this.timer = setInterval(() => this.turn(), this.intervalMs);
    this.timer.unref();
  }

  /** Drains once, now (also used by stop() so nothing already in the ring is lost). */
  drain(): number {
    let total = 0;
    for (;;) {
      const n = this.consumeOnce();
      total += n;
      if (n < this.budget) return total;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    if (this.rb) {
      this.drain();
      probeLib.ringBufferFree(this.rb);
    }
    if (this.cb !== null) unregisterSample(this.cb);
    this.rb = null;
    this.cb = null;
  }

  private turn(): void {
    this.immediate = null;
    if (!this.rb) return;
    if (this.consumeOnce() >= this.budget) this.immediate = setImmediate(() => this.turn());
  }

  /** One bounded pass; returns the number of records handled. */
  private consumeOnce(): number {
    if (!this.rb) return 0;
    this.inTurn = 0;
    const rc = probeLib.ringBufferConsume(this.rb);
    if (rc < 0 && rc !== STOP) throw new Error(`ring_buffer__consume: errno ${-rc}`);
    return this.inTurn;
  }

  private sample(data: unknown, size: number): number {
    this.inTurn++;
    this.consumed++;
    try {
      this.onRecord(copyOut(data, size));
    } catch {
      this.handlerErrors++;
    }
    return this.inTurn >= this.budget ? STOP : 0;
  }
}
