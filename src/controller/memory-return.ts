/**
 * Memory back to the system after a large config goes. V8 returns its own pages when it shrinks the heap, but
 * the buffers of a config (endpoint sets, map entries, decoded responses) live in glibc's malloc heap, which
 * keeps freed memory mapped: after a 131,000-endpoint config was replaced by a 3-endpoint one, 44 MB of it
 * stayed resident. malloc_trim(0) hands the free pages back (a few ms for a heap that size). V8 frees those
 * buffers only when it collects their objects, which it does on its own schedule after the allocation stops,
 * so the trims follow the last apply at growing intervals rather than right after it.
 */
import { libc } from '../runtime/libbpf.js';

/** Seconds after the last apply at which the heap is trimmed. */
const TRIM_AFTER_S = [2, 6, 15, 40];

export class MemoryReturn {
  private timer: NodeJS.Timeout | undefined;
  private step = 0;

  constructor(private readonly trim: ((pad: number) => number) | null = libc.mallocTrim) {}

  /** An apply happened: trims follow from now on (earlier ones not yet done are pushed back). */
  applied(): void {
    if (!this.trim) return;
    this.step = 0;
    this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(): void {
    clearTimeout(this.timer);
    const previous = this.step === 0 ? 0 : (TRIM_AFTER_S[this.step - 1] as number);
    const next = TRIM_AFTER_S[this.step];
    if (next === undefined) return;
    this.timer = setTimeout(
      () => {
        this.trim?.(0);
        this.step++;
        this.arm();
      },
      (next - previous) * 1000,
    );
    this.timer.unref();
  }
}
