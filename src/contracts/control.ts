/**
 * What the daemon offers the management surfaces (D-Bus, metrics, kmeshctl through D-Bus).
 * Implemented by Daemon in src/controller/daemon.ts; consumers depend on this interface only.
 */
import type { EventEmitter } from 'node:events';
import type { ServiceSpec } from '../model/types.js';

export type DaemonState = 'starting' | 'running' | 'reloading' | 'degraded' | 'stopping';

export interface ServiceStatus {
  /** The unit name, or the cgroup path for cgroup registrations. */
  name: string;
  unit?: string;
  /** Absolute path of the cgroup directory currently attached, if any. */
  cgroupPath?: string;
  /** cgroup v2 id (inode number), decimal string. */
  cgroupId?: string;
  attached: boolean;
  /** 'config' for [[services]] in TOML, 'runtime' for RegisterService. */
  origin: 'config' | 'runtime';
  /** Why it is not attached, when it is not. */
  detail?: string;
}

export interface FeatureStatus {
  enabled: boolean;
  reason?: string;
}

export interface DaemonStatus {
  version: string;
  state: DaemonState;
  /** Increments on every successful apply of config to the maps. */
  configVersion: number;
  configPath: string;
  xdsConnected: boolean;
  xdsAddress?: string;
  services: number;
  listeners: number;
  clusters: number;
  endpoints: number;
  features: Record<string, FeatureStatus>;
  startedAt: string;
  lastError?: string;
}

export interface DaemonEvents {
  /** A config (TOML or xDS) was written to the maps. */
  'config-applied': [configVersion: number];
  'service-changed': [name: string, change: 'registered' | 'unregistered' | 'attached' | 'detached'];
  'state-changed': [state: DaemonState];
}

export interface DaemonControl extends EventEmitter<DaemonEvents> {
  status(): DaemonStatus;
  listServices(): ServiceStatus[];
  /** Throws KmeshError (code 'InvalidArgument' | 'NotFound' | 'AlreadyExists' | ...) on bad input. */
  registerService(spec: ServiceSpec): Promise<ServiceStatus>;
  unregisterService(name: string): Promise<void>;
  /** JSON-ready: the live model and what is in the maps. */
  dumpConfig(): Promise<unknown>;
  /** Re-read the TOML; throws KmeshError('InvalidConfig') and changes nothing on a bad file. */
  reload(): Promise<number>;
  setLogLevel(level: string): void;
  setAccessLog(enabled: boolean): void;
}
