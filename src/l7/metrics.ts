/** The L7 data path's counters as Prometheus metrics (read from the kernel at scrape time). */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { L7Datapath } from './datapath.js';

/** `l7()`: the running L7 data path, if any (it starts with the first listener that has routes). */
export function registerL7Metrics(
  registry: Registry,
  l7: () => Pick<L7Datapath, 'counters' | 'routeStats'> | undefined,
  clusterName: (id: number) => string | undefined,
): void {
  new Counter({
    name: 'kmesh_l7_events_total',
    help:
      'L7 connections by what happened to their first request: connections, routed, not_http, no_route, truncated ' +
      '(head over the parse limit), pool_hit, slow_path (pool empty: spliced by the daemon), no_endpoint, later_mismatch, ' +
      'hashed (endpoint chosen by the route hash policy key), hash_key_absent (the route hashes, the request lacks the key), ' +
      'overflow (over the cluster max_requests: answered 503); and the daemon side: pool_connects, ' +
      'pool_connect_failures, pool_connect_timeouts, slow_path_spliced, slow_path_failed, ' +
      'slow_path_overflows (over max_pending_requests: answered 503), accepted, ' +
      'drain_markers (upstream FINs passed on behind a drain marker), fin_fallbacks (passed on after a delay instead).',
    labelNames: ['event'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [event, n] of Object.entries(l7()?.counters() ?? {}))
        if (event !== 'open_pairs') this.inc({ event }, n);
    },
  });
  new Gauge({
    name: 'kmesh_l7_open_connections',
    help: 'L7 client connections the daemon holds (anchor side and upstream).',
    registers: [registry],
    collect() {
      this.set(l7()?.counters().open_pairs ?? 0);
    },
  });
  new Counter({
    name: 'kmesh_l7_routed_connections_total',
    help: 'L7 connections by the route their first request matched (route "" = the listener default) and destination cluster.',
    labelNames: ['listener', 'virtual_host', 'route', 'destination_cluster'],
    registers: [registry],
    collect() {
      this.reset();
      for (const s of l7()?.routeStats() ?? []) {
        this.inc(
          {
            listener: s.route?.listener ?? '',
            virtual_host: s.route?.virtualHost ?? '',
            route: s.route?.route ?? '',
            destination_cluster: clusterName(s.clusterId) ?? String(s.clusterId),
          },
          s.connections,
        );
      }
    },
  });
}
