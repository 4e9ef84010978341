/**
 * The daemon's reports to the kernel (struct kmesh_l7_report): a pool or slow-path connect that
 * failed is a local-origin failure of that endpoint in the cluster, counted and ejected by the
 * kernel's own rule (kmesh_l7_report_verdict → kmesh_outlier.h), and a request refused by
 * max_pending_requests is an overflow in the cluster's counter. The daemon writes no counter the
 * kernel writes: the report socket's verdict does, in order, under the same locks.
 */
import { L7_REPORT_CONNECT_FAILED, L7_REPORT_CONNECT_TIMEOUT, L7_REPORT_OVERFLOW } from '../abi/kernel.js';
import type { BpfMap } from '../runtime/bpf-map.js';
import { ipBytes, l7Report } from './layouts.js';
import { openVerdictSocket, type VerdictSocket } from './verdict-socket.js';

export class KernelReports {
  private constructor(private readonly socket: VerdictSocket) {}

  /** The report socket goes into kmesh_l7_reports. */
  static async open(map: BpfMap, address: string): Promise<KernelReports> {
    return new KernelReports(await openVerdictSocket(map, address));
  }

  /** An IPv4 endpoint's connect failed (refused, unreachable) or timed out. */
  connectFailed(clusterId: number, address: string, port: number, timedOut: boolean): void {
    this.send(clusterId, address, port, timedOut ? L7_REPORT_CONNECT_TIMEOUT : L7_REPORT_CONNECT_FAILED);
  }

  overflow(clusterId: number): void {
    this.send(clusterId, '0.0.0.0', 0, L7_REPORT_OVERFLOW);
  }

  private send(clusterId: number, address: string, port: number, kind: number): void {
    if (this.socket.writer.destroyed) return;
    // KMESH_L7_REPORT_LEN bytes: the parser cuts the stream into records of that size
    const record = l7Report.encode({
      cluster_id: clusterId,
      ip4: ipBytes(address),
      port,
      kind,
    });
    this.socket.writer.write(record);
  }

  close(): void {
    this.socket.close();
  }
}
