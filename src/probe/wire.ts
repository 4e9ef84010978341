/**
 * How the probe joins a running daemon, written against the small surface below so the
 * probe depends on no controller internals: the loaded maps come from the data path,
 * names from the daemon's applied snapshot, metrics go into a registry it is handed.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { MapStats } from './daemon-metrics.js';
import type { ProbeLookups } from './labels.js';
import { Probe, type ProbeMaps } from './probe.js';

/** What the probe follows of the daemon. */
export interface ProbeEvents {
  on(event: 'service-changed', listener: (name: string, change: string) => void): unknown;
  onAccessLogChange(listener: (enabled: boolean) => void): void;
}

export interface ProbeWiring {
  maps: ProbeMaps;
  registry: Registry;
  logger: Logger;
  lookups: ProbeLookups;
  daemon: ProbeEvents;
  /** [daemon] access_log */
  accessLog: boolean;
  /** Destination for access lines (default: the daemon logger), e.g. a separate file. */
  accessLogger?: Logger;
}

export interface ProbeHandle {
  probe: Probe;
  /** The probe's own map fill, for kmesh_map_entries / kmesh_map_capacity. */
  mapStats(): MapStats[];
  stop(): void;
}

/** Starts the consumer and keeps the kernel's cgroup slots named as services attach. */
export function startProbe(w: ProbeWiring): ProbeHandle {
  const probe = new Probe({
    maps: w.maps,
    lookups: w.lookups,
    registry: w.registry,
    logger: w.logger,
    accessLog: w.accessLog,
    ...(w.accessLogger ? { accessLogger: w.accessLogger } : {}),
  });
  probe.start();
  w.daemon.onAccessLogChange((on) => probe.setAccessLog(on));
  // A new attachment has a zeroed cgroup slot: name it at once (the 1 s timer is the fallback).
  w.daemon.on('service-changed', (_name, change) => {
    if (change === 'attached') probe.syncCgroups();
  });
  return {
    probe,
    mapStats: () => [{ name: w.maps.conns.name, entries: probe.metrics.keys, capacity: w.maps.conns.maxEntries }],
    stop: () => probe.stop(),
  };
}
