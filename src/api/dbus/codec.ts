/**
 * Typed D-Bus shapes of DaemonStatus / ServiceStatus, both directions. Typed (a{sv}, structs) rather than one JSON
 * string so `busctl call`/`get-property` print readable, typed values; DumpConfig is the exception (free-form JSON).
 */
import dbus from 'dbus-next';
import type { DaemonStatus, ServiceStatus } from '../../contracts/control.js';

const { Variant } = dbus;

/** The read-only properties of org.openeuler.Kmesh1.Manager and their signatures. */
export const PROPERTY_SIGNATURES = {
  Version: 's',
  State: 's',
  XdsConnected: 'b',
  ConfigVersion: 'u',
  ServiceCount: 'u',
  ListenerCount: 'u',
  ClusterCount: 'u',
} as const;
export type PropertyName = keyof typeof PROPERTY_SIGNATURES;
export type PropertySnapshot = Record<PropertyName, string | number | boolean>;

/** D-Bus `u` is 32-bit unsigned; clamp rather than fail the whole reply on an absurd counter. */
function u32(n: number): number {
  if (!Number.isFinite(n) || n < 0) return 0;
  return Math.min(Math.trunc(n), 0xffffffff);
}

export function propertySnapshot(s: DaemonStatus): PropertySnapshot {
  return {
    Version: s.version,
    State: s.state,
    XdsConnected: s.xdsConnected,
    ConfigVersion: u32(s.configVersion),
    ServiceCount: u32(s.services),
    ListenerCount: u32(s.listeners),
    ClusterCount: u32(s.clusters),
  };
}

/** GetStatus → a{sv}. Optional fields are sent as "" so every key is always present for scripts. */
export function encodeStatus(s: DaemonStatus): Record<string, dbus.Variant> {
  const features: Record<string, [boolean, string]> = {};
  for (const [name, f] of Object.entries(s.features ?? {})) features[name] = [f.enabled, f.reason ?? ''];
  return {
    Version: new Variant('s', s.version),
    State: new Variant('s', s.state),
    ConfigVersion: new Variant('u', u32(s.configVersion)),
    ConfigPath: new Variant('s', s.configPath),
    XdsConnected: new Variant('b', s.xdsConnected),
    XdsAddress: new Variant('s', s.xdsAddress ?? ''),
    Services: new Variant('u', u32(s.services)),
    Listeners: new Variant('u', u32(s.listeners)),
    Clusters: new Variant('u', u32(s.clusters)),
    Endpoints: new Variant('u', u32(s.endpoints)),
    Features: new Variant('a{s(bs)}', features),
    StartedAt: new Variant('s', s.startedAt),
    LastError: new Variant('s', s.lastError ?? ''),
  };
}

/** The inverse of encodeStatus, for kmeshctl. */
export function decodeStatus(raw: Record<string, dbus.Variant>): DaemonStatus {
  const v = (k: string): unknown => raw[k]?.value;
  const features: DaemonStatus['features'] = {};
  for (const [name, pair] of Object.entries((v('Features') ?? {}) as Record<string, [boolean, string]>)) {
    features[name] = pair[1] ? { enabled: pair[0], reason: pair[1] } : { enabled: pair[0] };
  }
  const status: DaemonStatus = {
    version: String(v('Version') ?? ''),
    state: String(v('State') ?? 'starting') as DaemonStatus['state'],
    configVersion: Number(v('ConfigVersion') ?? 0),
    configPath: String(v('ConfigPath') ?? ''),
    xdsConnected: Boolean(v('XdsConnected')),
    services: Number(v('Services') ?? 0),
    listeners: Number(v('Listeners') ?? 0),
    clusters: Number(v('Clusters') ?? 0),
    endpoints: Number(v('Endpoints') ?? 0),
    features,
    startedAt: String(v('StartedAt') ?? ''),
  };
  const xds = String(v('XdsAddress') ?? '');
  if (xds) status.xdsAddress = xds;
  const lastError = String(v('LastError') ?? '');
  if (lastError) status.lastError = lastError;
  return status;
}

/** One service: (name, unit, origin, attached, cgroup_path, cgroup_id, detail) — signature (sssbsss). */
export const SERVICE_SIGNATURE = '(sssbsss)';
export type ServiceTuple = [string, string, string, boolean, string, string, string];

export function encodeService(s: ServiceStatus): ServiceTuple {
  return [s.name, s.unit ?? '', s.origin, s.attached, s.cgroupPath ?? '', s.cgroupId ?? '', s.detail ?? ''];
}

export function decodeService(t: ServiceTuple): ServiceStatus {
  const [name, unit, origin, attached, cgroupPath, cgroupId, detail] = t;
  const s: ServiceStatus = { name, attached, origin: origin === 'config' ? 'config' : 'runtime' };
  if (unit) s.unit = unit;
  if (cgroupPath) s.cgroupPath = cgroupPath;
  if (cgroupId) s.cgroupId = cgroupId;
  if (detail) s.detail = detail;
  return s;
}
