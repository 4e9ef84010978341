/** The per-connection Prometheus counters (Istio-compatible names) fed by probe events. */
import { Counter, type Registry } from 'prom-client';
import type { ConnEvent } from './event-codec.js';
import { CONNECTION_LABELS, type ConnectionLabels, LabelLimiter } from './labels.js';

/** Default bound on distinct connection label sets; see docs/metrics.md. */
export const DEFAULT_MAX_SERIES = 2000;

export class ConnectionMetrics {
  private readonly opened: Counter<string>;
  private readonly closed: Counter<string>;
  private readonly failed: Counter<string>;
  private readonly sent: Counter<string>;
  private readonly received: Counter<string>;
  private readonly overflow: Counter<string>;
  readonly limiter: LabelLimiter;

  constructor(
    registry: Registry,
    maxSeries = DEFAULT_MAX_SERIES,
  ) {
    this.limiter = new LabelLimiter(maxSeries);
    const make = (name: string, help: string): Counter<string> =>
      new Counter({ name, help, labelNames: [...CONNECTION_LABELS], registers: [registry] });
    this.opened = make('kmesh_tcp_connections_opened_total', 'TCP connections opened (established) by registered services.');
    this.closed = make('kmesh_tcp_connections_closed_total', 'TCP connections of registered services that were closed.');
    this.failed = make(
      'kmesh_tcp_connections_failed_total',
      'TCP connects of registered services that never established (refused, reset or timed out in SYN_SENT).',
    );
    this.sent = make('kmesh_tcp_sent_bytes_total', 'Payload bytes sent and acknowledged by the peer, counted at close.');
    this.received = make('kmesh_tcp_received_bytes_total', 'Payload bytes received, counted at close.');
    this.overflow = new Counter({
      name: 'kmesh_probe_label_overflow_total',
      help: 'Connection events counted under the "other" label set because the label-set bound was reached.',
      registers: [registry],
    });
  }

  /** `named` are the event's full labels (labelsOf); the bound is applied here. */
  record(ev: ConnEvent, named: ConnectionLabels): void {
    const before = this.limiter.overflowed;
    const labels = this.limiter.admit(named);
    if (this.limiter.overflowed !== before) this.overflow.inc();
    if (ev.kind === 'open') {
      this.opened.inc(labels);
    } else if (ev.kind === 'failed') {
      this.failed.inc(labels);
    } else {
      this.closed.inc(labels);
      // Number() is exact below 2^53 bytes per connection (8 PiB).
      this.sent.inc(labels, Number(ev.bytesSent));
      this.received.inc(labels, Number(ev.bytesReceived));
    }
  }
}
