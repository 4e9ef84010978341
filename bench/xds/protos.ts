/**
 * Hand-written protos (proto/) vs the canonical Envoy protos, both through protobufjs: start-up (load + resolve,
 * in a fresh process each), heap after loading, and decode time of the bench-sized push (1,000 clusters,
 * 1,000 × 10-endpoint assignments, 1,000 tcp_proxy listeners, typed configs included).
 * The canonical tree is not a dependency; point --canonical at a directory holding envoy-api/, xds/, googleapis/
 * and protoc-gen-validate/ (e.g. node_modules/@grpc/grpc-js-xds/deps after `npm install @grpc/grpc-js-xds` in a
 * scratch directory). Usage: node dist/bench/xds/protos.js --canonical DIR
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import protobuf from 'protobufjs';
import { protoDir, TYPE } from '../../src/api/xds/protos.js';

const { values: args } = parseArgs({
  options: { canonical: { type: 'string' }, one: { type: 'string' }, reps: { type: 'string', default: '20' } },
});
const FILES = [
  'envoy/service/discovery/v3/ads.proto',
  'envoy/config/cluster/v3/cluster.proto',
  'envoy/config/endpoint/v3/endpoint.proto',
  'envoy/config/listener/v3/listener.proto',
  'envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.proto',
];

function loadRoot(kind: string): protobuf.Root {
  const root = new protobuf.Root();
  if (kind === 'hand') {
    const base = protoDir();
    root.resolvePath = (_o, t) => (isAbsolute(t) ? t : join(base, t));
  } else {
    const deps = args.canonical as string;
    const pbjs = dirname(createRequire(import.meta.url).resolve('protobufjs/package.json'));
    const dirs = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d)).concat([pbjs]);
    root.resolvePath = (_o, t) => {
      if (isAbsolute(t)) return t;
      for (const d of dirs) if (existsSync(join(d, t))) return join(d, t);
      return t;
    };
  }
  root.loadSync(FILES, { keepCase: false });
  root.resolveAll();
  return root;
}

/** The bench push, encoded once with the hand-written types (wire-identical for both roots). */
function payload(root: protobuf.Root): Uint8Array[] {
  const enc = (name: string, obj: Record<string, unknown>) => {
    const t = root.lookupType(name);
    return t.encode(t.fromObject(obj)).finish();
  };
  const cn = (i: number) => `outbound|8080||svc${i}.bench.svc.cluster.local`;
  const resp = (typeUrl: string, resources: Uint8Array[]) =>
    enc('envoy.service.discovery.v3.DiscoveryResponse', {
      versionInfo: '1',
      typeUrl,
      nonce: '1',
      resources: resources.map((value) => ({ typeUrl, value })),
    });
  const clusters = Array.from({ length: 1000 }, (_, i) =>
    enc('envoy.config.cluster.v3.Cluster', {
      name: cn(i),
      type: 3,
      edsClusterConfig: { edsConfig: { ads: {} }, serviceName: cn(i) },
      connectTimeout: { seconds: 10 },
    }),
  );
  const clas = Array.from({ length: 1000 }, (_, i) =>
    enc('envoy.config.endpoint.v3.ClusterLoadAssignment', {
      clusterName: cn(i),
      endpoints: [
        {
          locality: { region: 'r', zone: 'z' },
          lbEndpoints: Array.from({ length: 10 }, (_, j) => ({
            endpoint: { address: { socketAddress: { address: `127.1.${j}.${i & 255}`, portValue: 20000 + j } } },
            healthStatus: 1,
            loadBalancingWeight: { value: 1 + (j % 3) },
          })),
        },
      ],
    }),
  );
  const listeners = Array.from({ length: 1000 }, (_, i) =>
    enc('envoy.config.listener.v3.Listener', {
      name: `127.20.${i >> 8}.${i & 255}_8080`,
      address: { socketAddress: { address: `127.20.${i >> 8}.${i & 255}`, portValue: 8080 } },
      filterChains: [
        {
          filters: [
            {
              name: 'envoy.filters.network.tcp_proxy',
              typedConfig: {
                typeUrl: TYPE.tcpProxy,
                value: enc('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy', {
                  statPrefix: cn(i),
                  cluster: cn(i),
                }),
              },
            },
          ],
        },
      ],
    }),
  );
  return [resp(TYPE.cluster, clusters), resp(TYPE.endpoint, clas), resp(TYPE.listener, listeners)];
}

function one(kind: string): void {
  const t0 = performance.now();
  const root = loadRoot(kind);
  const loadMs = performance.now() - t0;
  (globalThis as { gc?: () => void }).gc?.();
  const heapMB = process.memoryUsage().heapUsed / 2 ** 20;
  const msgs = payload(loadRoot('hand'));
  const resp = root.lookupType('envoy.service.discovery.v3.DiscoveryResponse');
  const byUrl: Record<string, protobuf.Type> = {
    [TYPE.cluster]: root.lookupType('envoy.config.cluster.v3.Cluster'),
    [TYPE.endpoint]: root.lookupType('envoy.config.endpoint.v3.ClusterLoadAssignment'),
    [TYPE.listener]: root.lookupType('envoy.config.listener.v3.Listener'),
  };
  const tcp = root.lookupType('envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy');
  const decodeAll = () => {
    for (const m of msgs) {
      // biome-ignore lint/suspicious/noExplicitAny: decoded message
      const r: any = resp.decode(m);
      for (const a of r.resources) {
        // protobufjs substitutes its bundled google/protobuf/any.proto (snake_case) in the canonical tree.
        // biome-ignore lint/suspicious/noExplicitAny: decoded message
        const x: any = (byUrl[a.typeUrl ?? a.type_url] as protobuf.Type).decode(a.value);
        for (const fc of x.filterChains ?? []) for (const f of fc.filters ?? []) tcp.decode(f.typedConfig.value);
      }
    }
  };
  const f0 = performance.now();
  decodeAll(); // first call includes protobufjs generating its codecs
  const firstMs = performance.now() - f0;
  const times: number[] = [];
  for (let i = 0; i < Number(args.reps); i++) {
    const s = performance.now();
    decodeAll();
    times.push(performance.now() - s);
  }
  times.sort((a, b) => a - b);
  const files =
    Object.keys((root as unknown as { files: string[] }).files ?? {}).length ||
    (root as unknown as { files: string[] }).files.length;
  process.stdout.write(
    `${JSON.stringify({ kind, files, loadMs, heapAfterLoadMB: heapMB, firstDecodeMs: firstMs, decodeMedianMs: times[times.length >> 1] })}\n`,
  );
}

if (args.one) one(args.one);
else {
  const self = fileURLToPath(import.meta.url);
  const kinds = args.canonical ? ['hand', 'canonical'] : ['hand'];
  const rows = kinds.map((k) =>
    JSON.parse(
      execFileSync(
        process.execPath,
        [
          '--expose-gc',
          self,
          '--one',
          k,
          ...(args.canonical ? ['--canonical', args.canonical] : []),
          '--reps',
          String(args.reps),
        ],
        { encoding: 'utf8' },
      ),
    ),
  );
  process.stdout.write(
    '| protos | .proto files loaded | load + resolve | heap after load | first decode (codegen) | decode, median |\n|---|---|---|---|---|---|\n',
  );
  for (const r of rows) {
    process.stdout.write(
      `| ${r.kind} | ${r.files} | ${r.loadMs.toFixed(1)} ms | ${r.heapAfterLoadMB.toFixed(1)} MB | ${r.firstDecodeMs.toFixed(1)} ms | ${r.decodeMedianMs.toFixed(1)} ms |\n`,
    );
  }
  if (!args.canonical) process.stdout.write('(pass --canonical DIR to compare with the canonical Envoy protos)\n');
}
