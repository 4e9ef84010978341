/**
 * The `[xds]` TOML table: type, validation, and the Node identity sent to the control plane.
 * The daemon's TOML parser calls parseXdsConfig with a `where(key)` that prefixes "file:line: xds.key".
 */
import { readFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { KmeshError } from '../../contracts/errors.js';
import { hostPortProblem } from '../../model/address.js';
import type { Locality } from '../../model/types.js';

export interface XdsConfig {
  /** host:port of the ADS server (istiod: 15010 plaintext, 15012 TLS). */
  address: string;
  /** Istio-style `sidecar~<IP>~<name>.<namespace>~<namespace>.svc.cluster.local`. */
  nodeId: string;
  /** Node.cluster (istiod reads the workload name from it). */
  cluster: string;
  namespace: string;
  labels: Record<string, string>;
  /** Extra Node.metadata entries (ISTIO_VERSION, CLUSTER_ID, ...); JSON-like values. */
  metadata: Record<string, unknown>;
  tls: boolean;
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  /** Re-read on every (re)connect, as projected service-account tokens rotate. */
  tokenFile?: string;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Wire protocol: state of the world (default: every ADS server speaks it) or delta (incremental). */
  mode: XdsMode;
  /** Node.locality, from `[daemon] locality`: istiod ranks endpoints by it for locality failover. */
  locality?: Locality;
}

export const XDS_MODES = ['sotw', 'delta'] as const;
export type XdsMode = (typeof XDS_MODES)[number];

const KEYS = new Set([
  'address',
  'node_id',
  'cluster',
  'namespace',
  'labels',
  'metadata',
  'ca_file',
  'cert_file',
  'key_file',
  'token_file',
  'tls',
  'initial_backoff_ms',
  'max_backoff_ms',
  'mode',
]);

function fail(where: (key: string) => string, key: string, msg: string): never {
  throw new KmeshError('InvalidConfig', `${where(key)}: ${msg}`);
}

function str(table: Record<string, unknown>, key: string, where: (key: string) => string): string | undefined {
  const v = table[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.trim() === '') fail(where, key, 'must be a non-empty string');
  return v;
}

function int(
  table: Record<string, unknown>,
  key: string,
  where: (key: string) => string,
  dflt: number,
  min: number,
  max: number,
): number {
  const raw = table[key];
  if (raw === undefined) return dflt;
  // smol-toml returns bigint for integers outside the safe range; treat as out of range.
  const v = typeof raw === 'bigint' ? Number(raw) : raw;
  if (typeof v !== 'number' || !Number.isInteger(v)) fail(where, key, 'must be an integer (milliseconds)');
  if (v < min || v > max) fail(where, key, `must be between ${min} and ${max}`);
  return v;
}

/** host:port where host is a name, an IPv4 literal or a bracketed IPv6 literal. */
function firstHostIp(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && a.family === 'IPv4') return a.address;
  }
  return '127.0.0.1';
}

export function parseXdsConfig(table: Record<string, unknown>, where: (key: string) => string): XdsConfig {
  for (const key of Object.keys(table)) {
    if (!KEYS.has(key)) fail(where, key, `unknown key (expected one of: ${[...KEYS].join(', ')})`);
  }
  const address = str(table, 'address', where);
  if (address === undefined) fail(where, 'address', 'is required when [xds] is present');
  const addrErr = hostPortProblem(address, 'connect');
  if (addrErr) fail(where, 'address', addrErr);

  const namespace = str(table, 'namespace', where) ?? 'default';
  const host = hostname().split('.')[0] || 'vm';
  const cluster = str(table, 'cluster', where) ?? `${host}.${namespace}`;
  const nodeId =
    str(table, 'node_id', where) ?? `sidecar~${firstHostIp()}~${host}.${namespace}~${namespace}.svc.cluster.local`;
  if (nodeId.includes('\n')) fail(where, 'node_id', 'must be a single line');

  const labels: Record<string, string> = {};
  if (table.labels !== undefined) {
    const l = table.labels;
    if (typeof l !== 'object' || l === null || Array.isArray(l)) fail(where, 'labels', 'must be a table of strings');
    for (const [k, v] of Object.entries(l)) {
      if (typeof v !== 'string') fail(where, 'labels', `label "${k}" must be a string`);
      labels[k] = v;
    }
  }
  let metadata: Record<string, unknown> = {};
  if (table.metadata !== undefined) {
    const m = table.metadata;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) fail(where, 'metadata', 'must be a table');
    try {
      toStructValue(m);
    } catch (e) {
      fail(where, 'metadata', (e as Error).message);
    }
    metadata = m as Record<string, unknown>;
  }

  const caFile = str(table, 'ca_file', where);
  const certFile = str(table, 'cert_file', where);
  const keyFile = str(table, 'key_file', where);
  const tokenFile = str(table, 'token_file', where);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    fail(where, certFile === undefined ? 'cert_file' : 'key_file', 'cert_file and key_file must be given together');
  }
  let tls = caFile !== undefined || certFile !== undefined;
  if (table.tls !== undefined) {
    if (typeof table.tls !== 'boolean') fail(where, 'tls', 'must be true or false');
    tls = table.tls;
  }
  if (!tls && (caFile || certFile)) fail(where, 'tls', 'is false but ca_file/cert_file are set');
  for (const [key, file] of [
    ['ca_file', caFile],
    ['cert_file', certFile],
    ['key_file', keyFile],
    ['token_file', tokenFile],
  ] as const) {
    if (file === undefined) continue;
    try {
      readFileSync(file);
    } catch (e) {
      fail(where, key, `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }

  const initialBackoffMs = int(table, 'initial_backoff_ms', where, 500, 10, 600_000);
  const maxBackoffMs = int(table, 'max_backoff_ms', where, 30_000, 10, 3_600_000);
  if (maxBackoffMs < initialBackoffMs) fail(where, 'max_backoff_ms', 'must be >= initial_backoff_ms');

  const mode = str(table, 'mode', where) ?? 'sotw';
  if (!(XDS_MODES as readonly string[]).includes(mode)) fail(where, 'mode', `must be one of: ${XDS_MODES.join(', ')}`);

  const cfg: XdsConfig = {
    address,
    nodeId,
    cluster,
    namespace,
    labels,
    metadata,
    tls,
    initialBackoffMs,
    maxBackoffMs,
    mode: mode as XdsMode,
  };
  if (caFile) cfg.caFile = caFile;
  if (certFile) cfg.certFile = certFile;
  if (keyFile) cfg.keyFile = keyFile;
  if (tokenFile) cfg.tokenFile = tokenFile;
  return cfg;
}

/** google.protobuf.Value in protobufjs object form. TOML dates become ISO strings. */
export function toStructValue(v: unknown, depth = 0): Record<string, unknown> {
  if (depth > 16) throw new Error('nested too deeply');
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'bigint') return { numberValue: Number(v) };
  if (v instanceof Date) return { stringValue: v.toISOString() };
  if (Array.isArray(v)) return { listValue: { values: v.map((x) => toStructValue(x, depth + 1)) } };
  if (typeof v === 'object') return { structValue: toStruct(v as Record<string, unknown>, depth + 1) };
  throw new Error(`unsupported value of type ${typeof v}`);
}

export function toStruct(obj: Record<string, unknown>, depth = 0): { fields: Record<string, unknown> } {
  const fields: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) fields[k] = toStructValue(v, depth);
  return { fields };
}

/** The Node message (protobufjs object form). Metadata follows what istiod expects from a proxy. */
export function buildNode(cfg: XdsConfig, version: string): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    NAMESPACE: cfg.namespace,
    LABELS: cfg.labels,
    INTERCEPTION_MODE: 'NONE',
    ...cfg.metadata,
  };
  return {
    id: cfg.nodeId,
    cluster: cfg.cluster,
    metadata: toStruct(meta),
    userAgentName: 'kmesh',
    userAgentVersion: version,
    ...(cfg.locality ? { locality: cfg.locality } : {}),
  };
}
