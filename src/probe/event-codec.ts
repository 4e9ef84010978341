/**
 * The TypeScript side of bpf/kmesh_probe.h; test/unit/probe-btf.test.ts checks the
 * layout against the BTF of build/bpf/kmesh_probe.bpf.o.
 */
import { decodeAddr } from '../runtime/maps/addr.js';
import { sockOrigin } from '../runtime/maps/layouts.js';
import { bytes, StructCodec, u8, u16, u32, u64 } from '../runtime/maps/struct-codec.js';

export const EV_CLOSE = 2;
export const EV_FAILED = 3;
export const F_STEERED = 0x1;

/** Key of kmesh_probe_conns: what decides a connection's labels (kernel-counted). */
export const probeConnKey = new StructCodec('kmesh_probe_conn_key', {
  cgroup_id: u64,
  origin: bytes(sockOrigin.size),
  remote: bytes(16),
  remote_port: u16,
  flags: u8,
  pad: bytes(5),
});

/** Value of kmesh_probe_conns (per CPU) and kmesh_probe_conns_overflow. */
export const probeConnCounts = new StructCodec('kmesh_probe_conn_counts', {
  opened: u64,
  closed: u64,
  failed: u64,
  bytes_sent: u64,
  bytes_received: u64,
  retransmits: u64,
  srtt_us_sum: u64,
});

export const probeEvent = new StructCodec('kmesh_probe_event', {
  cookie: u64,
  cgroup_id: u64,
  duration_ns: u64,
  bytes_sent: u64,
  bytes_received: u64,
  origin: bytes(sockOrigin.size),
  remote: bytes(16),
  remote_port: u16,
  local_port: u16,
  srtt_us: u32,
  total_retrans: u32,
  type: u8,
  flags: u8,
  pad: u16,
});

/** Value of kmesh_probe_cgroup (per-cgroup storage). */
export const probeCgroup = new StructCodec('kmesh_probe_cgroup', { cgroup_id: u64, flags: u32, pad: u32 });
/** kmesh_probe_cgroup.flags: queue access-log records (and time connections). */
export const CG_ACCESS_LOG = 0x1;

/** struct bpf_cgroup_storage_key from linux/bpf.h: the key of kmesh_probe_cgroup. */
export const cgroupStorageKey = new StructCodec('bpf_cgroup_storage_key', {
  cgroup_inode_id: u64,
  attach_type: u32,
});

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

const KINDS: Record<number, EventKind> = { [EV_CLOSE]: 'close', [EV_FAILED]: 'failed' };

function steeredOf(flags: number, origin: Buffer): ConnTarget['steered'] {
  if (!(flags & F_STEERED)) return undefined;
  const o = sockOrigin.decode(origin);
  return {
    vip: decodeAddr(o.vip),
    vipPort: o.vip_port,
    endpoint: decodeAddr(o.endpoint),
    endpointPort: o.endpoint_port,
    clusterId: o.cluster_id,
  };
}

/** Decodes a kmesh_probe_conns key. */
export function decodeConnKey(buf: Buffer): ConnTarget {
  const raw = probeConnKey.decode(buf);
  const target: ConnTarget = { cgroupId: raw.cgroup_id, remote: decodeAddr(raw.remote), remotePort: raw.remote_port };
  const steered = steeredOf(raw.flags, raw.origin);
  if (steered) target.steered = steered;
  return target;
}

/** Decodes one ring-buffer record; returns null for a type this build does not know. */
export function decodeEvent(buf: Buffer): ConnEvent | null {
  const raw = probeEvent.decode(buf);
  const kind = KINDS[raw.type];
  if (!kind) return null;
  const ev: ConnEvent = {
    kind,
    cookie: raw.cookie,
    cgroupId: raw.cgroup_id,
    durationNs: raw.duration_ns,
    bytesSent: raw.bytes_sent,
    bytesReceived: raw.bytes_received,
    remote: decodeAddr(raw.remote),
    remotePort: raw.remote_port,
    localPort: raw.local_port,
    srttUs: raw.srtt_us,
    retransmits: raw.total_retrans,
  };
  const steered = steeredOf(raw.flags, raw.origin);
  if (steered) ev.steered = steered;
  return ev;
}

/** ip:port, with IPv6 in brackets as in a URL. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}
