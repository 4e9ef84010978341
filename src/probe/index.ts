/** kmesh-probe: connection counters and records from the kernel → Prometheus metrics and access log. */
export { AccessLog, accessRecord } from './access-log.js';
export { ConnectionMetrics, DEFAULT_MAX_SERIES } from './connection-metrics.js';
export { type DaemonMetricsSources, type MapStats, registerDaemonMetrics, type XdsStats } from './daemon-metrics.js';
export { type ConnEvent, decodeEvent, probeEvent } from './event-codec.js';
export { LabelLimiter, labelsOf, type ProbeLookups } from './labels.js';
export { PROBE_MAPS, PROBE_OBJECT, PROBE_PROGRAM, Probe, type ProbeOptions, probeMapsOf } from './probe.js';
export { enableBpfStats, progStats } from './prog-stats.js';
export { type MetricsServer, parseListen, startMetricsServer } from './server.js';
export { type ProbeDaemon, type ProbeHandle, type ProbeSettings, startProbe } from './wire.js';
