/**
 * Daemon-level metrics: read at scrape time from what the daemon already knows, so a
 * scrape during a reload sees the last applied state, never a half-applied one.
 */
import { Counter, collectDefaultMetrics, Gauge, type Registry } from 'prom-client';
import { CONFIG_SLOTS } from '../abi/kernel.js';
import type { DaemonControl, DaemonStatus } from '../contracts/control.js';
import { progStats } from './prog-stats.js';

export interface XdsStats {
  /** Responses accepted (ACKed), cumulative, by type URL short name (e.g. "Cluster"). */
  pushes: Record<string, number>;
  /** Responses rejected (NACKed), cumulative, by type short name. */
  nacks: Record<string, number>;
}

export interface MapStats {
  name: string;
  /** Entries in use as the daemon knows them (it wrote them); omitted when unknown (LRU maps). */
  entries?: number;
  capacity: number;
}

export interface DaemonMetricsSources {
  /** The daemon; only status() and the 'config-applied' event are used. */
  control: Pick<DaemonControl, 'status'> & { on(event: 'config-applied', listener: () => void): unknown };
  xds?: () => XdsStats;
  maps: () => MapStats[];
  /** The loaded programs; run counts are reported when kernel stats are enabled. */
  programs: () => Array<{ name: string; fd: number }>;
  /** Whether run statistics are being collected (sysctl or enableBpfStats fd). */
  bpfStatsEnabled?: () => boolean;
}

export function registerDaemonMetrics(registry: Registry, src: DaemonMetricsSources): void {
  collectDefaultMetrics({ register: registry });
  // prom-client names these gauges *_total, which promtool rejects for non-counters; the
  // per-type nodejs_active_handles/requests/resources gauges carry the same information.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const regs = [registry];

  new Gauge({
    name: 'kmesh_daemon_info',
    help: 'Always 1; the labels carry the daemon version and state.',
    labelNames: ['version', 'state'],
    registers: regs,
    collect() {
      const s = src.control.status();
      this.reset();
      this.set({ version: s.version, state: s.state }, 1);
    },
  });
  new Gauge({
    name: 'kmesh_config_version',
    help: 'Config version last applied to the maps (increments on every successful apply).',
    registers: regs,
    collect() {
      this.set(src.control.status().configVersion);
    },
  });
  const applies = new Counter({
    name: 'kmesh_config_applies_total',
    help: 'Successful applies of configuration (TOML or xDS) to the maps since start.',
    registers: regs,
  });
  // applies before the metrics existed (the first one happens during start-up) count too
  applies.inc(src.control.status().configVersion);
  src.control.on('config-applied', () => applies.inc());
  new Gauge({
    name: 'kmesh_xds_connected',
    help: '1 while the ADS stream to the control plane is up.',
    registers: regs,
    collect() {
      this.set(src.control.status().xdsConnected ? 1 : 0);
    },
  });
  const cumulative = (name: string, help: string, pick: (x: XdsStats) => Record<string, number>): void => {
    new Counter({
      name,
      help,
      labelNames: ['type'],
      registers: regs,
      collect() {
        if (!src.xds) return;
        this.reset();
        for (const [type, n] of Object.entries(pick(src.xds()))) if (n > 0) this.inc({ type }, n);
      },
    });
  };
  cumulative('kmesh_xds_pushes_total', 'xDS responses accepted (ACKed), by resource type.', (x) => x.pushes);
  cumulative('kmesh_xds_nacks_total', 'xDS responses rejected (NACKed), by resource type.', (x) => x.nacks);

  new Gauge({
    name: 'kmesh_map_entries',
    help: 'Entries in use per BPF map.',
    labelNames: ['map'],
    registers: regs,
    collect() {
      for (const m of src.maps()) if (m.entries !== undefined) this.set({ map: m.name }, m.entries);
    },
  });
  new Gauge({
    name: 'kmesh_map_capacity',
    help: 'Maximum entries per BPF map (max_entries).',
    labelNames: ['map'],
    registers: regs,
    collect() {
      for (const m of src.maps()) this.set({ map: m.name }, m.capacity);
    },
  });

  new Gauge({
    name: 'kmesh_bpf_stats_enabled',
    help: '1 when the kernel collects BPF program run statistics (kernel.bpf_stats_enabled or BPF_ENABLE_STATS).',
    registers: regs,
    collect() {
      this.set(src.bpfStatsEnabled?.() ? 1 : 0);
    },
  });
  // run_cnt/run_time_ns are cumulative in the kernel: mirror them (reset + inc) at scrape time.
  const mirror = (name: string, help: string, pick: (s: ReturnType<typeof progStats>) => number): void => {
    new Counter({
      name,
      help,
      labelNames: ['program'],
      registers: regs,
      collect() {
        this.reset();
        for (const p of src.programs()) {
          try {
            this.inc({ program: p.name }, pick(progStats(p.fd)));
          } catch {
            // a program closed during a reload: skip it this scrape
          }
        }
      },
    });
  };
  mirror('kmesh_bpf_prog_runs_total', 'Runs of each BPF program (0 unless BPF run statistics are enabled).', (s) =>
    Number(s.runCount),
  );
  mirror(
    'kmesh_bpf_prog_run_seconds_total',
    'Time spent in each BPF program (0 unless BPF run statistics are enabled).',
    (s) => Number(s.runTimeNs) / 1e9,
  );
}

/** Fill of the L4 maps: capacities from the maps, entries where the daemon knows them without walking a map. */
export function l4MapStats(
  maps: Record<'listeners' | 'clusters' | 'endpoints' | 'roundRobin', { name: string; maxEntries: number }>,
  status: Pick<DaemonStatus, 'listeners' | 'clusters' | 'endpoints'>,
): MapStats[] {
  return [
    // one config's share: the maps hold the live config and the one being switched to
    { name: maps.listeners.name, entries: status.listeners, capacity: maps.listeners.maxEntries / CONFIG_SLOTS },
    { name: maps.clusters.name, entries: status.clusters, capacity: maps.clusters.maxEntries / CONFIG_SLOTS },
    // live endpoints; during a swap the old generation briefly occupies entries too
    { name: maps.endpoints.name, entries: status.endpoints, capacity: maps.endpoints.maxEntries },
    { name: maps.roundRobin.name, capacity: maps.roundRobin.maxEntries },
  ];
}
