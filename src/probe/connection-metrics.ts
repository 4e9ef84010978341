/**
 * The per-connection Prometheus counters (Istio-compatible names), fed from the
 * counters the kernel keeps per connection key (kmesh_probe_conns). The kernel's
 * values are cumulative; each refresh adds what changed since the last one, so the
 * daemon does no work per connection, only per key and scrape.
 */
import { Counter, type Registry } from 'prom-client';
import { decodeConnKey } from './event-codec.js';
import { COUNT_NAMES, type ConnCounts, NO_COUNTS } from './kernel-state.js';
import {
  CONNECTION_LABELS,
  type ConnectionLabels,
  LabelLimiter,
  labelsOf,
  OTHER,
  type ProbeLookups,
} from './labels.js';

/** Default bound on distinct connection label sets; see docs/metrics.md. */
export const DEFAULT_MAX_SERIES = 2000;

const OVERFLOW: ConnectionLabels = {
  reporter: 'source',
  source_workload: OTHER,
  destination_service: OTHER,
  destination_address: OTHER,
  destination_cluster: OTHER,
};

/** The kernel's counters as the metrics read them. */
export interface ConnCountsSource {
  /** Cumulative counts per connection key (raw kmesh_probe_conn_key bytes). */
  read(): Array<{ key: Buffer; counts: ConnCounts }>;
  /** Cumulative counts of connections whose key did not fit into the map. */
  overflow(): ConnCounts;
  /** Keys the map holds at most. */
  readonly capacity: number;
  /** Deletes a key whose counts were folded in (its cgroup is gone). */
  remove(key: Buffer): void;
  /** Cgroups that still have the program attached, i.e. may count again. */
  liveCgroups(): ReadonlySet<bigint>;
}

interface Seen {
  counts: ConnCounts;
  labels: ConnectionLabels;
  cgroupId: bigint;
}

/** now − before per field; a key the kernel lost and re-created counts from zero again. */
function delta(now: ConnCounts, before: ConnCounts): ConnCounts {
  if (COUNT_NAMES.some((name) => now[name] < before[name])) return now;
  const out = { ...now };
  for (const name of COUNT_NAMES) out[name] -= before[name];
  return out;
}

const isZero = (c: ConnCounts): boolean => COUNT_NAMES.every((name) => c[name] === 0);

export class ConnectionMetrics {
  private readonly opened: Counter<string>;
  private readonly closed: Counter<string>;
  private readonly failed: Counter<string>;
  private readonly sent: Counter<string>;
  private readonly received: Counter<string>;
  private readonly retransmits: Counter<string>;
  private readonly srtt: Counter<string>;
  private readonly overflow: Counter<string>;
  readonly limiter: LabelLimiter;
  /** Last cumulative counts per key (latin1 of the key bytes) and the labels they went to. */
  private readonly seen = new Map<string, Seen>();
  private overflowSeen: ConnCounts = NO_COUNTS;
  /** Set by a scrape's read until the event loop's next turn: the other counters of that scrape reuse it. */
  private readThisTurn = false;

  constructor(
    registry: Registry,
    private readonly lookups: ProbeLookups,
    private readonly source: ConnCountsSource,
    maxSeries = DEFAULT_MAX_SERIES,
  ) {
    this.limiter = new LabelLimiter(maxSeries);
    const self = this;
    const make = (name: string, help: string): Counter<string> =>
      new Counter({
        name,
        help,
        labelNames: [...CONNECTION_LABELS],
        registers: [registry],
        collect() {
          self.refreshForScrape();
        },
      });
    this.opened = make(
      'kmesh_tcp_connections_opened_total',
      'TCP connections opened (established) by registered services.',
    );
    this.closed = make(
      'kmesh_tcp_connections_closed_total',
      'TCP connections of registered services that were closed.',
    );
    this.failed = make(
      'kmesh_tcp_connections_failed_total',
      'TCP connects of registered services that never established (refused, reset or timed out in SYN_SENT).',
    );
    this.sent = make(
      'kmesh_tcp_sent_bytes_total',
      'Payload bytes sent and acknowledged by the peer, counted at close.',
    );
    this.received = make('kmesh_tcp_received_bytes_total', 'Payload bytes received, counted at close.');
    this.retransmits = make(
      'kmesh_tcp_retransmitted_segments_total',
      'TCP segments retransmitted by connections of registered services, counted at close.',
    );
    this.srtt = make(
      'kmesh_tcp_srtt_seconds_total',
      'Smoothed RTT at close, summed over closed connections: divided by kmesh_tcp_connections_closed_total it is their mean RTT.',
    );
    this.overflow = new Counter({
      name: 'kmesh_probe_label_overflow_total',
      help: 'Connection events counted under the "other" label set because the label-set or kernel key bound was reached.',
      registers: [registry],
    });
  }

  /** Distinct connection keys as of the last refresh. */
  get keys(): number {
    return this.seen.size;
  }

  /** One read per scrape: a scrape collects every counter within one turn of the event loop. */
  refreshForScrape(): void {
    if (this.readThisTurn) return;
    this.readThisTurn = true;
    setImmediate(() => {
      this.readThisTurn = false;
    });
    this.refresh();
  }

  /**
   * Adds what the kernel counted since the last refresh. When the kernel map is over
   * half full, keys of cgroups that are gone are deleted once folded in, so live keys
   * keep finding room.
   */
  refresh(): void {
    const rows = this.source.read();
    const live = rows.length > this.source.capacity / 2 ? this.source.liveCgroups() : undefined;
    for (const { key, counts } of rows) {
      const id = key.toString('latin1');
      let seen = this.seen.get(id);
      const change = seen ? delta(counts, seen.counts) : counts;
      // keys are decoded and named only when they have something new
      if (!seen || !isZero(change)) {
        const target = decodeConnKey(key);
        // names may have changed (a renamed listener or unit): new counts go to the current ones;
        // a cgroup that is gone keeps the name it had
        const labels =
          seen && this.lookups.workloadOfCgroup(target.cgroupId) === undefined
            ? seen.labels
            : this.admit(labelsOf(target, this.lookups), change);
        this.add(labels, change);
        seen = { counts, labels, cgroupId: target.cgroupId };
        this.seen.set(id, seen);
      }
      if (live && !live.has(seen.cgroupId)) {
        this.source.remove(key);
        this.seen.delete(id);
      }
    }
    const overflowNow = this.source.overflow();
    const overflowChange = delta(overflowNow, this.overflowSeen);
    this.overflowSeen = overflowNow;
    this.overflow.inc(overflowChange.opened + overflowChange.closed + overflowChange.failed);
    this.add(OVERFLOW, overflowChange);
  }

  /** The labels under the cardinality bound; events folded into "other" are counted. */
  private admit(labels: ConnectionLabels, change: ConnCounts): ConnectionLabels {
    const before = this.limiter.overflowed;
    const admitted = this.limiter.admit(labels);
    if (this.limiter.overflowed !== before) this.overflow.inc(change.opened + change.closed + change.failed);
    return admitted;
  }

  private add(labels: ConnectionLabels, c: ConnCounts): void {
    if (c.opened) this.opened.inc(labels, c.opened);
    if (c.failed) this.failed.inc(labels, c.failed);
    if (c.closed) this.closed.inc(labels, c.closed);
    if (c.sent) this.sent.inc(labels, c.sent);
    if (c.received) this.received.inc(labels, c.received);
    if (c.retransmits) this.retransmits.inc(labels, c.retransmits);
    if (c.srttUsSum) this.srtt.inc(labels, c.srttUsSum / 1e6);
  }
}
