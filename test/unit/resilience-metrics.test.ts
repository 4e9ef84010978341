/** Resilience metrics from the kernel's state, in Prometheus text. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';
import type { EndpointStatus } from '../../src/contracts/control.js';
import { registerResilienceMetrics } from '../../src/probe/resilience-metrics.js';

const endpoint = (port: number, healthy: boolean, priority = 0): EndpointStatus => ({
  address: '127.0.0.1',
  port,
  priority,
  locality: '',
  weight: 1,
  healthy,
  activeConnections: port - 9000,
  consecutiveFailures: 0,
  timesEjected: healthy ? 0 : 1,
  ejectionsTotal: healthy ? 0 : 1,
  failuresTotal: healthy ? 0 : 5,
  connectTimeoutsTotal: healthy ? 0 : 2,
});

test('per-cluster and per-endpoint series, healthy endpoints per priority', async () => {
  const registry = new Registry();
  registerResilienceMetrics(registry, {
    clusterCounters: () => [
      {
        cluster: 'reviews',
        activeConnections: 3,
        overflowsTotal: 4,
        ejectionsTotal: 1,
        ejectionsRefusedTotal: 0,
        ejectionsActive: 1,
      },
    ],
    endpointStatus: () => [endpoint(9001, true), endpoint(9002, false), endpoint(9003, true, 1)],
  });
  const text = await registry.metrics();
  for (const line of [
    'kmesh_cluster_active_connections{cluster="reviews"} 3',
    'kmesh_cluster_overflows_total{cluster="reviews"} 4',
    'kmesh_cluster_ejections_active{cluster="reviews"} 1',
    'kmesh_cluster_healthy_endpoints{cluster="reviews",priority="0"} 1',
    'kmesh_cluster_healthy_endpoints{cluster="reviews",priority="1"} 1',
    'kmesh_endpoint_ejected{cluster="reviews",endpoint="127.0.0.1:9002"} 1',
    'kmesh_endpoint_active_connections{cluster="reviews",endpoint="127.0.0.1:9003"} 3',
    'kmesh_endpoint_connect_timeouts_total{cluster="reviews",endpoint="127.0.0.1:9002"} 2',
  ]) {
    assert.ok(text.includes(line), `missing ${line}\n${text}`);
  }
});
