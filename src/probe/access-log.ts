/**
 * One JSON line per finished connection (closed or failed), through pino. The line
 * carries the names (labels) and the raw addresses, so it answers "which endpoint did
 * this connection of that unit land on" even when the metrics folded it into "other".
 */
import type { Logger } from 'pino';
import { type ConnEvent, hostPort } from './event-codec.js';
import type { ConnectionLabels } from './labels.js';

export interface AccessRecord {
  kind: 'access';
  event: 'close' | 'failed';
  source_workload: string;
  source_cgroup_id: string;
  destination_service: string;
  destination_cluster: string;
  /** The address the application dialled: the VIP when steered, else the peer. */
  vip?: string;
  endpoint: string;
  local_port: number;
  bytes_sent: number;
  bytes_received: number;
  /** Absent for connections made before the access log was switched on. */
  duration_ms?: number;
  rtt_us: number;
  retransmits: number;
}

export function accessRecord(ev: ConnEvent, labels: ConnectionLabels): AccessRecord {
  const rec: AccessRecord = {
    kind: 'access',
    event: ev.kind,
    source_workload: labels.source_workload,
    source_cgroup_id: ev.cgroupId.toString(),
    destination_service: labels.destination_service,
    destination_cluster: labels.destination_cluster,
    endpoint: ev.steered ? hostPort(ev.steered.endpoint, ev.steered.endpointPort) : hostPort(ev.remote, ev.remotePort),
    local_port: ev.localPort,
    bytes_sent: Number(ev.bytesSent),
    bytes_received: Number(ev.bytesReceived),
    rtt_us: ev.srttUs,
    retransmits: ev.retransmits,
  };
  if (ev.steered) rec.vip = hostPort(ev.steered.vip, ev.steered.vipPort);
  if (ev.durationNs > 0n) rec.duration_ms = Number(ev.durationNs / 1000n) / 1000;
  return rec;
}

/** The switchable writer; `enabled` can flip at any time (TOML reload, D-Bus). */
export class AccessLog {
  private readonly out: Logger;

  constructor(
    logger: Logger,
    public enabled: boolean,
  ) {
    // Own level: access lines are not debug output and must not vanish at log_level=warn.
    this.out = logger.child({ component: 'access' }, { level: 'info' });
  }

  write(ev: ConnEvent, labels: ConnectionLabels): void {
    if (!this.enabled) return;
    const rec = accessRecord(ev, labels);
    this.out.info(rec, rec.event === 'close' ? 'connection closed' : 'connection failed');
  }
}
