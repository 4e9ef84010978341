/**
 * V8 flags the daemon runs with: a host daemon favours a small resident set over
 * allocation throughput. Measured by bench/xds (1,000 clusters × 10 endpoints):
 * RSS ≈ 140 MB with Node's defaults, ≈ 94 MB with these, push times within their floors.
 * They must be given on node's command line (set at run time they do not shrink the
 * heap already reserved): packaging/bin/kmesh-daemon, `npm start`, the demo and the
 * benches pass them, and test/unit/node-flags.test.ts keeps the launcher in step.
 */
export const DAEMON_NODE_FLAGS = ['--optimize-for-size', '--max-semi-space-size=1'] as const;

/**
 * Environment the daemon's process starts with (read by glibc at start-up, so it is set by
 * whoever execs node: the launcher, `npm start`, the demo and bench/xds). glibc gives
 * each thread that allocates its own malloc arena (up to 8 per core); the daemon's
 * native allocations (gRPC, libbpf, koffi, V8's helper threads) are few, and two arenas
 * keep bench/xds's resident set ≈ 6 MB lower (90–92 MB against 94–99 MB) at no cost to
 * its push times. A fixed trim threshold (glibc's default, 128 KiB, which glibc otherwise raises
 * up to 64 MiB after the first large block is freed) gives freed heap back at once: about 2 MB
 * less peak growth under 200 concurrent /metrics scrapes (docs/metrics.md).
 */
export const DAEMON_ENV = { MALLOC_ARENA_MAX: '2', MALLOC_TRIM_THRESHOLD_: '131072' } as const;
