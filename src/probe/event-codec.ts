/** The probe's records and keys decoded (codecs generated from bpf/kmesh_probe.h, see runtime/maps/layouts.ts). */
import { PROBE_EV_CLOSE, PROBE_EV_FAILED, PROBE_F_STEERED } from '../abi/kernel.js';
import { decodeAddr } from '../model/address.js';
import { bpfCgroupStorageKey, probeConnKey, probeEvent, sockOrigin } from '../runtime/maps/layouts.js';

export { PROBE_CG_ACCESS_LOG as CG_ACCESS_LOG } from '../abi/kernel.js';
export { probeCgroup, probeConnCounts, probeConnKey, probeEvent } from '../runtime/maps/layouts.js';
/** struct bpf_cgroup_storage_key from linux/bpf.h: the key of kmesh_probe_cgroup. */
export const cgroupStorageKey = bpfCgroupStorageKey;

export type EventKind = 'close' | 'failed';

/** Where a connection went, as the kernel saw it: the part of a record or key that decides labels. */
export interface ConnTarget {
  cgroupId: bigint;
  /** Present when the L4 data path steered the socket (kmesh_sock_origin had it). */
  steered?: { vip: string; vipPort: number; endpoint: string; endpointPort: number; clusterId: number };
  remote: string;
  remotePort: number;
}

/** An access-log record with addresses as text. */
export interface ConnEvent extends ConnTarget {
  kind: EventKind;
  cookie: bigint;
  /** 0 when timing was off for the connection (access log off at connect time). */
  durationNs: bigint;
  bytesSent: bigint;
  bytesReceived: bigint;
  localPort: number;
  srttUs: number;
  retransmits: number;
}

const KINDS: Record<number, EventKind> = { [PROBE_EV_CLOSE]: 'close', [PROBE_EV_FAILED]: 'failed' };

const EV = {
  cookie: probeEvent.offsetOf('cookie'),
  cgroupId: probeEvent.offsetOf('cgroup_id'),
  durationNs: probeEvent.offsetOf('duration_ns'),
  bytesSent: probeEvent.offsetOf('bytes_sent'),
  bytesReceived: probeEvent.offsetOf('bytes_received'),
  origin: probeEvent.offsetOf('origin'),
  remote: probeEvent.offsetOf('remote'),
  remotePort: probeEvent.offsetOf('remote_port'),
  localPort: probeEvent.offsetOf('local_port'),
  srttUs: probeEvent.offsetOf('srtt_us'),
  retransmits: probeEvent.offsetOf('total_retrans'),
  type: probeEvent.offsetOf('type'),
  flags: probeEvent.offsetOf('flags'),
};

const ORIGIN = {
  vip: sockOrigin.offsetOf('vip'),
  endpoint: sockOrigin.offsetOf('endpoint'),
  vipPort: sockOrigin.offsetOf('vip_port'),
  endpointPort: sockOrigin.offsetOf('endpoint_port'),
  clusterId: sockOrigin.offsetOf('cluster_id'),
};

/** The steering decision of a struct kmesh_sock_origin at `buf[at ..]`, read in place. */
function steeredAt(flags: number, buf: Buffer, at: number): ConnTarget['steered'] {
  if (!(flags & PROBE_F_STEERED)) return undefined;
  return {
    vip: decodeAddr(buf.subarray(at + ORIGIN.vip, at + ORIGIN.vip + 16)),
    vipPort: buf.readUInt16LE(at + ORIGIN.vipPort),
    endpoint: decodeAddr(buf.subarray(at + ORIGIN.endpoint, at + ORIGIN.endpoint + 16)),
    endpointPort: buf.readUInt16LE(at + ORIGIN.endpointPort),
    clusterId: buf.readUInt32LE(at + ORIGIN.clusterId),
  };
}

/** Decodes a kmesh_probe_conns key. */
export function decodeConnKey(buf: Buffer): ConnTarget {
  const raw = probeConnKey.decode(buf);
  const target: ConnTarget = { cgroupId: raw.cgroup_id, remote: decodeAddr(raw.remote), remotePort: raw.remote_port };
  const steered = steeredAt(raw.flags, raw.origin, 0);
  if (steered) target.steered = steered;
  return target;
}

/** Decodes one ring-buffer record; returns null for a type this build does not know. */
export function decodeEvent(buf: Buffer): ConnEvent | null {
  if (buf.length < probeEvent.size) throw new Error(`kmesh_probe_event: ${buf.length} bytes, need ${probeEvent.size}`);
  // read in place: one record per access-log line, and the generic decode copies every member
  const kind = KINDS[buf[EV.type] ?? 0];
  if (!kind) return null;
  const ev: ConnEvent = {
    kind,
    cookie: buf.readBigUInt64LE(EV.cookie),
    cgroupId: buf.readBigUInt64LE(EV.cgroupId),
    durationNs: buf.readBigUInt64LE(EV.durationNs),
    bytesSent: buf.readBigUInt64LE(EV.bytesSent),
    bytesReceived: buf.readBigUInt64LE(EV.bytesReceived),
    remote: decodeAddr(buf.subarray(EV.remote, EV.remote + 16)),
    remotePort: buf.readUInt16LE(EV.remotePort),
    localPort: buf.readUInt16LE(EV.localPort),
    srttUs: buf.readUInt32LE(EV.srttUs),
    retransmits: buf.readUInt32LE(EV.retransmits),
  };
  const steered = steeredAt(buf[EV.flags] ?? 0, buf, EV.origin);
  if (steered) ev.steered = steered;
  return ev;
}

/** ip:port, with IPv6 in brackets as in a URL. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
