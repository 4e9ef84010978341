import type { XdsConfig } from '../../api/xds/config.js';
import type { Locality, MeshModel, ServiceSpec } from '../../model/types.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const DEFAULT_CONFIG_PATH = '/etc/kmesh/kmesh.toml';
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/kmesh';

export interface DaemonSettings {
  logLevel: LogLevel;
  /** bpffs directory for maps and links. */
  pinDir: string;
  accessLog: boolean;
  /** How often registered cgroups are checked for removal and re-creation. */
  rescanIntervalMs: number;
  /** This VM's locality: clusters with outlier detection fail over by it; sent to xDS as the node's. */
  locality?: Locality;
}

export interface KmeshConfig {
  path: string;
  daemon: DaemonSettings;
  metrics?: { listen: string };
  /** [xds]; without it the TOML is the whole config. */
  xds?: XdsConfig;
  services: ServiceSpec[];
  model: MeshModel;
}
