/**
 * Resilience metrics, read at scrape time from the kernel's per-cluster and per-endpoint state (the daemon's
 * Resilience reader): circuit-breaker overflows, ejections, active connections, connect timeouts and healthy
 * endpoints per priority. Clusters without resilience settings have no such state and no series here.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { EndpointStatus } from '../contracts/control.js';
import type { ClusterCounters } from '../controller/resilience.js';

export interface ResilienceSource {
  clusterCounters(): ClusterCounters[];
  endpointStatus(cluster: string): EndpointStatus[];
}

const endpointLabel = (e: EndpointStatus) =>
  e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;

export function registerResilienceMetrics(registry: Registry, src: ResilienceSource): void {
  const regs = [registry];
  // One read of the kernel state per scrape, shared by every series below.
  let snapshot: { at: number; clusters: Array<ClusterCounters & { endpoints: EndpointStatus[] }> } | undefined;
  const read = () => {
    if (snapshot && Date.now() - snapshot.at < 100) return snapshot.clusters;
    const clusters = src.clusterCounters().map((c) => {
      let endpoints: EndpointStatus[] = [];
      try {
        endpoints = src.endpointStatus(c.cluster);
      } catch {
        // removed between the two reads
      }
      return { ...c, endpoints };
    });
    snapshot = { at: Date.now(), clusters };
    return clusters;
  };
  const perCluster = (
    kind: 'gauge' | 'counter',
    name: string,
    help: string,
    pick: (c: ClusterCounters) => number,
  ): void => {
    const Metric = kind === 'gauge' ? Gauge : Counter;
    new Metric({
      name,
      help,
      labelNames: ['cluster'],
      registers: regs,
      collect(this: Gauge | Counter) {
        this.reset();
        for (const c of read()) (this as Gauge).inc({ cluster: c.cluster }, pick(c));
      },
    });
  };
  perCluster(
    'gauge',
    'kmesh_cluster_active_connections',
    'Connections connecting or open per cluster.',
    (c) => c.activeConnections,
  );
  perCluster(
    'counter',
    'kmesh_cluster_overflows_total',
    'Connects refused because the cluster was at max_connections, and L7 requests answered 503 over max_requests or max_pending_requests (circuit breakers).',
    (c) => c.overflowsTotal,
  );
  perCluster(
    'counter',
    'kmesh_cluster_ejections_total',
    'Endpoint ejections by outlier detection.',
    (c) => c.ejectionsTotal,
  );
  perCluster(
    'counter',
    'kmesh_cluster_ejections_refused_total',
    'Ejections not made because max_ejection_percent of the cluster was ejected already.',
    (c) => c.ejectionsRefusedTotal,
  );
  perCluster('gauge', 'kmesh_cluster_ejections_active', 'Endpoints ejected right now.', (c) => c.ejectionsActive);

  new Gauge({
    name: 'kmesh_cluster_healthy_endpoints',
    help: 'Endpoints not ejected, per cluster and priority.',
    labelNames: ['cluster', 'priority'],
    registers: regs,
    collect() {
      this.reset();
      for (const c of read()) {
        for (const e of c.endpoints) this.inc({ cluster: c.cluster, priority: String(e.priority) }, e.healthy ? 1 : 0);
      }
    },
  });
  const perEndpoint = (
    kind: 'gauge' | 'counter',
    name: string,
    help: string,
    pick: (e: EndpointStatus) => number,
  ): void => {
    const Metric = kind === 'gauge' ? Gauge : Counter;
    new Metric({
      name,
      help,
      labelNames: ['cluster', 'endpoint'],
      registers: regs,
      collect(this: Gauge | Counter) {
        this.reset();
        for (const c of read()) {
          for (const e of c.endpoints) (this as Gauge).inc({ cluster: c.cluster, endpoint: endpointLabel(e) }, pick(e));
        }
      },
    });
  };
  perEndpoint(
    'gauge',
    'kmesh_endpoint_active_connections',
    'Connections connecting or open per endpoint.',
    (e) => e.activeConnections,
  );
  perEndpoint('gauge', 'kmesh_endpoint_ejected', '1 while outlier detection has the endpoint ejected.', (e) =>
    e.healthy ? 0 : 1,
  );
  perEndpoint('counter', 'kmesh_endpoint_ejections_total', 'Times the endpoint was ejected.', (e) => e.ejectionsTotal);
  perEndpoint(
    'counter',
    'kmesh_endpoint_connect_failures_total',
    'Connections that failed: refused, timed out, or reset.',
    (e) => e.failuresTotal,
  );
  perEndpoint(
    'counter',
    'kmesh_endpoint_connect_timeouts_total',
    'Connects that timed out.',
    (e) => e.connectTimeoutsTotal,
  );
}
