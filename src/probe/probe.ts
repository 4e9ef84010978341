/**
 * kmesh-probe in user space: the kernel's connection counters → Prometheus counters,
 * and ring-buffer records → access log.
 *
 * Lifecycle: the data path (src/datapath/) loads kmesh_probe.bpf.o with the other
 * objects (same pin directory, so kmesh_sock_origin is shared with the L4 path) and
 * the daemon attaches its program to every registered cgroup with the others; a Probe
 * is built on the family's maps, start()ed, told after each attach (syncCgroups) and
 * stop()ped on shutdown (src/probe/wire.ts).
 */
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BpfMap } from '../runtime/bpf-map.js';
import { AccessLog } from './access-log.js';
import { ConnectionMetrics, DEFAULT_MAX_SERIES } from './connection-metrics.js';
import { CG_ACCESS_LOG, type ConnEvent, cgroupStorageKey, decodeEvent, probeEvent } from './event-codec.js';
import { readConnCounts, readOverflowCounts, readPerCpuCounter, syncCgroupIds } from './kernel-state.js';
import { labelsOf, type ProbeLookups } from './labels.js';
import { RingBufferConsumer } from './ringbuf.js';

/** How often keys of cgroups that are gone are looked for when nobody scrapes. */
const MAINTENANCE_MS = 60_000;

type MapLike = Pick<BpfMap, 'fd' | 'name' | 'keys' | 'lookup' | 'update'>;

type PerCpu = Pick<BpfMap, 'name' | 'lookup' | 'valueStride' | 'valueBytes'>;

export interface ProbeMaps {
  events: Pick<BpfMap, 'fd' | 'name' | 'maxEntries'>;
  drops: PerCpu;
  cgroups: MapLike;
  conns: Pick<BpfMap, 'name' | 'maxEntries' | 'delete' | 'forEachBatched' | 'valueStride'>;
  connsOverflow: PerCpu;
}

export interface ProbeOptions {
  maps: ProbeMaps;
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
  /** Seen by tests: every decoded access-log record, after the log. */
  onEvent?: (ev: ConnEvent) => void;
}

export class Probe {
  private readonly consumer: RingBufferConsumer;
  readonly metrics: ConnectionMetrics;
  private readonly access: AccessLog;
  private syncTimer: NodeJS.Timeout | null = null;
  private maintenanceTimer: NodeJS.Timeout | null = null;
  private lastDrops = 0n;
  private running = false;
  /** Access-log records read from the ring, by type. */
  private readonly records = { close: 0, failed: 0 };

  constructor(private readonly opts: ProbeOptions) {
    const { registry, maps } = opts;
    this.metrics = new ConnectionMetrics(
      registry,
      opts.lookups,
      {
        read: () => readConnCounts(maps.conns),
        overflow: () => readOverflowCounts(maps.connsOverflow),
        capacity: maps.conns.maxEntries,
        remove: (key) => maps.conns.delete(key),
        liveCgroups: () => this.attachedCgroupIds(),
      },
      opts.maxSeries ?? DEFAULT_MAX_SERIES,
    );
    this.access = new AccessLog(opts.accessLogger ?? opts.logger, opts.accessLog);
    const records = this.records;
    new Counter({
      name: 'kmesh_probe_access_records_total',
      help: 'Access-log records read from the kernel ring buffer, by type.',
      labelNames: ['type'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [type, n] of Object.entries(records)) this.inc({ type }, n);
      },
    });
    const self = this;
    new Counter({
      name: 'kmesh_probe_ringbuf_drops_total',
      help: 'Access-log records the kernel could not queue because the ring buffer was full (the connections are counted; their log lines are missing).',
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
    new Gauge({
      name: 'kmesh_probe_connection_keys',
      help: 'Distinct connection keys the kernel counts (bounded by the capacity of kmesh_probe_conns).',
      registers: [registry],
      collect() {
        self.metrics.refreshForScrape();
        this.set(self.metrics.keys);
      },
    });
    const { events } = maps;
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
    this.maintenanceTimer = setInterval(() => this.refreshMetrics(), MAINTENANCE_MS);
    this.maintenanceTimer.unref();
    this.running = true;
  }

  /** Drains what is queued, then stops reading; the kernel side keeps counting drops. */
  stop(): void {
    if (this.syncTimer) clearInterval(this.syncTimer);
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    this.syncTimer = null;
    this.maintenanceTimer = null;
    this.consumer.stop();
    this.running = false;
  }

  /** Switches the kernel's access-log records (and per-connection timing) in every registered cgroup. */
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
      return syncCgroupIds(this.opts.maps.cgroups, this.access.enabled ? CG_ACCESS_LOG : 0);
    } catch (err) {
      this.opts.logger.warn({ err }, 'probe: cgroup id sync failed');
      return 0;
    }
  }

  /** Ids of the cgroups the program is attached to (one storage entry each). */
  private attachedCgroupIds(): Set<bigint> {
    const ids = new Set<bigint>();
    for (const key of this.opts.maps.cgroups.keys()) ids.add(cgroupStorageKey.decode(key).cgroup_inode_id);
    return ids;
  }

  private refreshMetrics(): void {
    try {
      this.metrics.refresh();
    } catch (err) {
      this.opts.logger.warn({ err }, 'probe: reading the connection counters failed');
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

  /** One access-log record (the kernel queues them only while the log is on). */
  private handle(ring: Buffer, at: number, size: number): void {
    if (size < probeEvent.size) return;
    const ev = decodeEvent(ring.subarray(at, at + probeEvent.size));
    if (!ev) return;
    this.records[ev.kind]++;
    this.access.write(ev, labelsOf(ev, this.opts.lookups));
    this.opts.onEvent?.(ev);
  }
}
