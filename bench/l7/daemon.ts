/**
 * The daemon process of bench/l7: a real Daemon (its own pin directory) with the bench's
 * L7 model built in code; prints "ready" and runs until SIGTERM. Its CPU time is what
 * bench/l7/run.ts charges to the Kmesh path. argv: pinDir cgroup vip port v1Port v2Port
 */
import pino from 'pino';
import { startParts } from '../../src/bin/compose.js';
import { cleanupPins } from '../../src/controller/cleanup.js';
import { parseConfig } from '../../src/controller/config/load.js';
import type { MeshModel } from '../../src/model/types.js';

const [pinDir, cgroup, vip, port, v1Port, v2Port] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
  string,
];

const model: MeshModel = {
  clusters: [
    {
      name: 'v1',
      lbPolicy: 'round_robin',
      endpoints: [{ address: '127.0.0.1', port: Number(v1Port), weight: 1 }],
      source: 'xds',
    },
    {
      name: 'v2',
      lbPolicy: 'round_robin',
      endpoints: [{ address: '127.0.0.1', port: Number(v2Port), weight: 1 }],
      source: 'xds',
    },
    // the same server behind a maglev cluster, for the route that hashes on a header (path h)
    {
      name: 'v2-hashed',
      lbPolicy: 'maglev',
      endpoints: [{ address: '127.0.0.1', port: Number(v2Port), weight: 1 }],
      source: 'xds',
    },
  ],
  listeners: [
    {
      name: 'bench',
      address: vip,
      port: Number(port),
      protocol: 'http',
      routes: [{ cluster: 'v1', weight: 1 }],
      source: 'xds',
      virtualHosts: [
        {
          name: 'bench',
          domains: ['*'],
          routes: [
            {
              name: 'hashed',
              match: { headers: [{ name: 'x-user', matcher: { kind: 'present' }, invert: false }] },
              clusters: [{ cluster: 'v2-hashed', weight: 1 }],
              hashPolicy: { kind: 'header', name: 'x-user' },
            },
            {
              name: 'canary',
              match: { headers: [{ name: 'x-canary', matcher: { kind: 'exact', value: '1' }, invert: false }] },
              clusters: [{ cluster: 'v2', weight: 1 }],
            },
            {
              name: 'default',
              match: { path: { kind: 'prefix', value: '/' }, headers: [] },
              clusters: [{ cluster: 'v1', weight: 1 }],
            },
          ],
        },
      ],
    },
  ],
};

const config = parseConfig(
  `[daemon]\nlog_level = "warn"\npin_dir = "${pinDir}"\n\n[[services]]\ncgroup = "${cgroup}"\n`,
  '/tmp/kmesh-bench-l7.toml',
);
const parts = await startParts({ config, logger: pino({ level: 'warn' }), pinDir, l7: { poolDepth: 64 } });
const { daemon } = parts;
try {
  await daemon.applyXds(model);
  if (!(await daemon.l7Ready())) throw new Error('the L7 data path did not start');
} catch (err) {
  // A failed start must not leave its pins behind under /sys/fs/bpf.
  await parts.stop();
  cleanupPins(pinDir);
  throw err;
}
console.log('ready');
const stop = async () => {
  console.error(JSON.stringify({ l7: daemon.l7?.counters(), cpu: process.cpuUsage() }));
  await parts.stop();
  cleanupPins(pinDir);
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
