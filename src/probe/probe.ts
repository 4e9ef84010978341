/**
 * kmesh-probe in user space: ring-buffer events → Prometheus counters and access log.
 *
 * Lifecycle (the daemon's side): load build/bpf/kmesh_probe.bpf.o with the other
 * objects (same pin directory, so kmesh_sock_origin is shared with the L4 path),
 * construct a Probe with the loaded maps, start() it, attach `kmesh_probe_sockops`
 * to every registered cgroup next to the L4 programs and call syncCgroups() after
 * each attach; stop() on shutdown.
 */
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BpfMap } from '../runtime/bpf-map.js';
import { AccessLog } from './access-log.js';
import { Aggregator } from './aggregate.js';
import { ConnectionMetrics, DEFAULT_MAX_SERIES } from './connection-metrics.js';
import { CG_TIMING, type ConnEvent, decodeEvent, EV_OPEN, probeEvent } from './event-codec.js';
import { readPerCpuCounter, syncCgroupIds } from './kernel-state.js';
import { labelsOf, type ProbeLookups } from './labels.js';
import { RingBufferConsumer } from './ringbuf.js';

export const PROBE_OBJECT = 'kmesh_probe.bpf.o';
export const PROBE_PROGRAM = 'kmesh_probe_sockops';
export const PROBE_MAPS = {
  events: 'kmesh_probe_events',
  drops: 'kmesh_probe_drops',
  cgroups: 'kmesh_probe_cgroup',
} as const;

type MapLike = Pick<BpfMap, 'fd' | 'name' | 'keys' | 'lookup' | 'update'>;

export interface ProbeOptions {
  maps: { events: Pick<BpfMap, 'fd' | 'name' | 'maxEntries'>; drops: Pick<BpfMap, 'fd' | 'name'>; cgroups: MapLike };
  lookups: ProbeLookups;
  registry: Registry;
  logger: Logger;
  accessLog: boolean;
  /** Where access lines go (default: `logger`), e.g. a logger writing to a separate file. */
  accessLogger?: Logger;
  /** Bound on distinct connection label sets (default 2000). */
  maxSeries?: number;
  /** Ring-buffer poll period in ms (default 20). */
  pollIntervalMs?: number;
  /** Seen by tests: every decoded event, after metrics. */
  onEvent?: (ev: ConnEvent) => void;
}

export class Probe {
  private readonly consumer: RingBufferConsumer;
  private readonly metrics: ConnectionMetrics;
  private readonly access: AccessLog;
  private readonly agg: Aggregator;
  private syncTimer: NodeJS.Timeout | null = null;
  private lastDrops = 0n;
  private running = false;

  constructor(private readonly opts: ProbeOptions) {
    const { registry } = opts;
    const maxSeries = opts.maxSeries ?? DEFAULT_MAX_SERIES;
    // Keys between two scrapes; a few per label set is plenty, the rest is "other".
    this.agg = new Aggregator(4 * maxSeries);
    // A scrape first reads what the kernel has queued: it reports every connection event up to that moment.
    this.metrics = new ConnectionMetrics(
      registry,
      opts.lookups,
      () => {
        this.consumer.drain();
        return this.agg.drain();
      },
      maxSeries,
    );
    this.access = new AccessLog(opts.accessLogger ?? opts.logger, opts.accessLog);
    const agg = this.agg;
    new Counter({
      name: 'kmesh_probe_events_total',
      help: 'Connection events read from the kernel ring buffer, by type.',
      labelNames: ['type'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [type, n] of Object.entries(agg.byType)) this.inc({ type }, n);
      },
    });
    const self = this;
    new Counter({
      name: 'kmesh_probe_ringbuf_drops_total',
      help: 'Connection events the kernel could not queue because the ring buffer was full (their connections are missing from the connection counters).',
      registers: [registry],
      collect() {
        // Drops are counted in the kernel (per CPU); fold the delta in at scrape time.
        self.pullDrops(this);
      },
    });
    new Gauge({
      name: 'kmesh_probe_label_sets',
      help: 'Distinct connection label sets in use (bounded by the label-set limit).',
      registers: [registry],
      collect() {
        this.set(self.metrics.limiter.size);
      },
    });
    const { events } = opts.maps;
    this.consumer = new RingBufferConsumer(
      events.fd,
      events.maxEntries,
      (ring, at, size) => this.handle(ring, at, size),
      {
        intervalMs: opts.pollIntervalMs ?? 20,
        onError: (err) => opts.logger.error({ err }, 'probe: reading the ring buffer failed'),
      },
    );
  }

  start(): void {
    if (this.running) return;
    this.syncCgroups();
    this.consumer.start();
    // Also catch attaches the daemon did not tell us about (the sync is a few syscalls).
    this.syncTimer = setInterval(() => this.syncCgroups(), 1000);
    this.syncTimer.unref();
    this.running = true;
  }

  /** Drains what is queued, then stops reading; the kernel side keeps counting drops. */
  stop(): void {
    if (this.syncTimer) clearInterval(this.syncTimer);
    this.syncTimer = null;
    this.consumer.stop();
    this.running = false;
  }

  /** Also switches per-connection timing in the kernel: durations are for the access log only. */
  setAccessLog(on: boolean): void {
    if (this.access.enabled === on) return;
    this.access.enabled = on;
    this.syncCgroups();
  }

  get accessLogEnabled(): boolean {
    return this.access.enabled;
  }

  /** Writes each attached cgroup's id and switches into its storage; call right after attaching the program. */
  syncCgroups(): number {
    try {
      return syncCgroupIds(this.opts.maps.cgroups, this.access.enabled ? CG_TIMING : 0);
    } catch (err) {
      this.opts.logger.warn({ err }, 'probe: cgroup id sync failed');
      return 0;
    }
  }

  /** Reads the ring buffer now (tests; the timer does this otherwise). */
  drain(): number {
    return this.consumer.drain();
  }

  /** Time spent reading and handling events so far, ns. */
  get consumerBusyNs(): bigint {
    return this.consumer.busyNs;
  }

  /** Events lost in the kernel so far (cumulative, all CPUs). */
  drops(): bigint {
    return readPerCpuCounter(this.opts.maps.drops);
  }

  private pullDrops(counter: Counter<string>): void {
    try {
      const now = this.drops();
      if (now > this.lastDrops) counter.inc(Number(now - this.lastDrops));
      this.lastDrops = now;
    } catch (err) {
      this.opts.logger.warn({ err }, 'probe: reading ring-buffer drops failed');
    }
  }

  /** Per record: sums only; objects and names only when the access log or a test wants them. */
  private handle(ring: Buffer, at: number, size: number): void {
    const type = this.agg.add(ring, at, size);
    if (type === 0) return;
    const logIt = this.access.enabled && type !== EV_OPEN;
    if (!logIt && !this.opts.onEvent) return;
    const ev = decodeEvent(ring.subarray(at, at + probeEvent.size));
    if (!ev) return;
    if (logIt) this.access.write(ev, labelsOf(ev, this.opts.lookups));
    this.opts.onEvent?.(ev);
  }
}
