/** The per-connection Prometheus counters (Istio-compatible names) fed by probe events. */
import { Counter, type Registry } from 'prom-client';
import type { Sums } from './aggregate.js';
import { decodeEvent } from './event-codec.js';
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

export class ConnectionMetrics {
  private readonly opened: Counter<string>;
  private readonly closed: Counter<string>;
  private readonly failed: Counter<string>;
  private readonly sent: Counter<string>;
  private readonly received: Counter<string>;
  private readonly overflow: Counter<string>;
  readonly limiter: LabelLimiter;

  /**
   * @param pull called before any of the counters is read (scrape, tests): hands the
   *   sums accumulated since the last call. Each counter calls it; the first call of a
   *   scrape gets the data, the others find nothing new.
   */
  constructor(
    registry: Registry,
    private readonly lookups: ProbeLookups,
    pull: () => Sums[],
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
          for (const sums of pull()) self.apply(sums);
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
    this.overflow = new Counter({
      name: 'kmesh_probe_label_overflow_total',
      help: 'Connection events counted under the "other" label set because the label-set bound was reached.',
      registers: [registry],
    });
  }

  /** Adds one key's sums under its labels (after the cardinality bound). */
  apply(sums: Sums): void {
    let labels = OVERFLOW;
    let overflowed = sums.overflow === true;
    if (!overflowed) {
      const ev = decodeEvent(sums.sample);
      if (!ev) return;
      const before = this.limiter.overflowed;
      labels = this.limiter.admit(labelsOf(ev, this.lookups));
      overflowed = this.limiter.overflowed !== before;
    }
    if (overflowed) this.overflow.inc(sums.opened + sums.closed + sums.failed);
    if (sums.opened) this.opened.inc(labels, sums.opened);
    if (sums.failed) this.failed.inc(labels, sums.failed);
    if (sums.closed) {
      this.closed.inc(labels, sums.closed);
      this.sent.inc(labels, sums.sent);
      this.received.inc(labels, sums.received);
    }
  }
}
