/**
 * V8 flags the daemon runs with: a host daemon favours a small resident set over
 * allocation throughput. Measured by bench/xds (1,000 clusters × 10 endpoints):
 * RSS ≈ 140 MB with Node's defaults, ≈ 94 MB with these, push times within their floors.
 * They must be given on node's command line (set at run time they do not shrink the
 * heap already reserved): packaging/bin/kmesh-daemon, `npm start`, the demo and the
 * benches pass them, and test/unit/node-flags.test.ts keeps the launcher in step.
 */
export const DAEMON_NODE_FLAGS = ['--optimize-for-size', '--max-semi-space-size=1'] as const;
