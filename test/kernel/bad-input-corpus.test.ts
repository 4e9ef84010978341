/**
 * Bad input as table tests on a live daemon (real kernel, real maps): every bad kmesh.toml is refused by a
 * reload with its `kmesh.toml:<line>: <key>: <problem>` message, every bad xDS resource is NACKed naming it
 * (through the in-repo ADS server), and after each one the live maps are exactly what they were.
 * Ports 31040-31049, VIPs 127.41.4.0/24, a test-made cgroup only.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import type { XdsClient } from '../../src/api/xds/client.js';
import { parseXdsConfig } from '../../src/api/xds/config.js';
import { attachXds } from '../../src/api/xds/plugin.js';
import type { dumpMaps } from '../../src/controller/map-dump.js';
import { cgroup2View } from '../../src/runtime/cgroup2.js';
import { cluster, loadAssignment, type Res, TYPE, tcpListener, XdsTestServer } from '../fixtures/xds-server.js';
import { makeCgroup, type TestCgroup } from './support/cgroup.js';
import { startTestDaemon, type TestDaemon } from './support/daemon.js';

const MOUNT = cgroup2View().mount;
const CLUSTER = 'cluster = "a"';
const A = ['[[clusters]]', 'name = "a"', 'endpoints = [ { address = "127.0.0.1", port = 31041 } ]'].join('\n');
const L = (lines: string[] = []) =>
  ['[[listeners]]', 'name = "la"', 'address = "127.41.4.1"', 'port = 31040', ...lines].join('\n');
const ep = (fields: string) => ['[[clusters]]', 'name = "e"', `endpoints = [ { ${fields} } ]`].join('\n');

/** [what, kmesh.toml body (a [daemon] table is added unless the body has one), what the message must say]. */
const BAD_TOML: Array<[string, string, RegExp]> = [
  ['syntax: unclosed table header', '[[clusters]\nname = "a"', /^kmesh\.toml:\d+: TOML syntax error: /],
  ['syntax: duplicate key', `${A}\nname = "b"`, /TOML syntax error/],
  ['syntax: binary garbage', '\u0000\u0001\u00ff = =', /TOML syntax error/],
  ['unknown section', '[frobnicate]\nx = 1', /frobnicate: unknown section/],
  ['section of the wrong kind', 'clusters = 5\n[daemon]\nlog_level = "warn"', /clusters: must be an array of tables/],
  ['log_level unknown', '[daemon]\nlog_level = "loud"', /daemon\.log_level: must be one of fatal/],
  ['log_level not a string', '[daemon]\nlog_level = 5', /daemon\.log_level: must be a non-empty string, got 5/],
  [
    'rescan interval too small',
    '[daemon]\nrescan_interval_ms = 5',
    /rescan_interval_ms: must be an integer 100\.\.60000, got 5/,
  ],
  ['rescan interval quoted', '[daemon]\nrescan_interval_ms = "100"', /write the number without quotes/],
  ['access_log not a boolean', '[daemon]\naccess_log = "yes"', /daemon\.access_log: must be true or false/],
  [
    'pin_dir outside bpffs',
    '[daemon]\npin_dir = "/tmp/kmesh"',
    /daemon\.pin_dir: must be a directory below \/sys\/fs\/bpf\//,
  ],
  ['pin_dir with ..', '[daemon]\npin_dir = "/sys/fs/bpf/../tmp"', /daemon\.pin_dir: must be a directory below/],
  ['unknown daemon key', '[daemon]\nfrobnicate = 1', /daemon\.frobnicate: unknown key/],
  ['metrics listen without port', '[metrics]\nlisten = "localhost"', /metrics\.listen: must be host:port/],
  ['metrics port out of range', '[metrics]\nlisten = "127.0.0.1:99999"', /metrics\.listen: port 99999 out of range/],
  ['xds without address', '[xds]\nnode_id = "n"', /xds\.address: is required/],
  ['xds address without port', '[xds]\naddress = "istiod"', /xds\.address: must be host:port/],
  ['service with unit and cgroup', '[[services]]\nunit = "a.service"\ncgroup = "/x"', /needs exactly one of/],
  ['service with neither', '[[services]]', /needs exactly one of/],
  ['unit name without a type', '[[services]]\nunit = "orders"', /services\[0\]\.unit: not a systemd unit name/],
  [
    'cgroup "/" is the root',
    '[[services]]\ncgroup = "/"',
    /services\[0\]\.cgroup: refusing cgroup \/: it is the cgroup v2 root/,
  ],
  ['cgroup mount/ is the root', `[[services]]\ncgroup = "${MOUNT}/"`, /is the cgroup v2 root/],
  ['cgroup x/../ is the root', `[[services]]\ncgroup = "${MOUNT}/x/../"`, /is the cgroup v2 root/],
  ['cgroup above the mount', `[[services]]\ncgroup = "${MOUNT}/../.."`, /is not below the cgroup v2 mount/],
  ['cgroup a file', `[[services]]\ncgroup = "${MOUNT}/cgroup.procs"`, /not a directory/],
  [
    'service registered twice',
    '[[services]]\nunit = "a.service"\n[[services]]\nunit = "a.service"',
    /is registered twice/,
  ],
  [
    'cluster without name',
    '[[clusters]]\nendpoints = [ { address = "127.0.0.1", port = 1 } ]',
    /clusters\[0\]\.name: is required/,
  ],
  ['duplicate cluster', `${A}\n${A}`, /duplicate cluster name "a"/],
  [
    'lb_policy unknown',
    `${A}\nlb_policy = "fastest"`,
    /lb_policy: must be one of round_robin, random, least_request, maglev, ring_hash/,
  ],
  ['endpoints missing', '[[clusters]]\nname = "e"', /clusters\[0\]\.endpoints: is required/],
  ['endpoints empty', '[[clusters]]\nname = "e"\nendpoints = []', /the endpoint set is empty/],
  ['endpoints not tables', '[[clusters]]\nname = "e"\nendpoints = "x"', /endpoints: must be an array of tables/],
  ['endpoint host name', ep('address = "db.example", port = 1'), /address: not an IP address literal: "db\.example"/],
  ['endpoint zone id', ep('address = "fe80::1%eth0", port = 1'), /not an IP address literal: "fe80::1%eth0"/],
  ['endpoint port 0', ep('address = "127.0.0.1", port = 0'), /port: must be an integer 1\.\.65535, got 0/],
  [
    'endpoint port quoted',
    ep('address = "127.0.0.1", port = "8080"'),
    /port: must be an integer 1\.\.65535, got "8080" \(a string/,
  ],
  [
    'endpoint weight 0',
    ep('address = "127.0.0.1", port = 1, weight = 0'),
    /weight: must be an integer 1\.\.1000000, got 0/,
  ],
  [
    'endpoint weight 1e12',
    ep('address = "127.0.0.1", port = 1, weight = 1e12'),
    /must be an integer 1\.\.1000000, got 1000000000000/,
  ],
  [
    'endpoint weight 1.5',
    ep('address = "127.0.0.1", port = 1, weight = 1.5'),
    /weight: must be an integer 1\.\.1000000, got 1\.5/,
  ],
  ['endpoint unknown key', ep('address = "127.0.0.1", port = 1, zone = "a"'), /endpoints\[0\]\.zone: unknown key/],
  ['listener unknown cluster', `${A}\n${L(['cluster = "nope"'])}`, /listeners\[0\]\.cluster: unknown cluster "nope"/],
  [
    'listener with cluster and weighted',
    `${A}\n${L([CLUSTER, 'weighted_clusters = [ { cluster = "a", weight = 1 } ]'])}`,
    /needs exactly one of/,
  ],
  ['listener with neither', `${A}\n${L()}`, /needs exactly one of cluster/],
  [
    'listener host name',
    `${A}\n${L([CLUSTER]).replace('127.41.4.1', 'vip.example')}`,
    /address: not an IP address literal/,
  ],
  [
    'listener port 70000',
    `${A}\n${L([CLUSTER]).replace('31040', '70000')}`,
    /listeners\[0\]\.port: must be an integer 1\.\.65535, got 70000/,
  ],
  ['listener protocol', `${A}\n${L([CLUSTER, 'protocol = "sctp"'])}`, /protocol: must be one of tcp, udp, http/],
  [
    'two listeners on one address',
    `${A}\n${L([CLUSTER])}\n${L([CLUSTER]).replace('"la"', '"lb"')}`,
    /is already used by listener "la"/,
  ],
  [
    'duplicate listener name',
    `${A}\n${L([CLUSTER])}\n${L([CLUSTER]).replace('31040', '31042')}`,
    /duplicate listener name "la"/,
  ],
  ['weighted_clusters empty', `${A}\n${L(['weighted_clusters = []'])}`, /weighted_clusters/],
  [
    'weighted weight 0',
    `${A}\n${L(['weighted_clusters = [ { cluster = "a", weight = 0 } ]'])}`,
    /weight: must be an integer 1\.\.1000000, got 0/,
  ],
  [
    '17 weighted clusters',
    `${A}\n${L([`weighted_clusters = [ ${Array(17).fill('{ cluster = "a", weight = 1 }').join(', ')} ]`])}`,
    /at most 16 clusters, got 17/,
  ],
  [
    'over the listener capacity',
    `${A}\n${Array.from({ length: 16_385 }, (_, i) => `[[listeners]]\nname = "l${i}"\naddress = "127.41.${100 + (i >> 8)}.${i & 255}"\nport = 31040\ncluster = "a"`).join('\n')}`,
    /listeners\[16384\]: 16,385 listeners exceed the listener map capacity of 16,384/,
  ],
];

/** [what, the type pushed, the resources, what the NACK must say, sent as is (`set` keys resources by name)]. */
type BadXds = [string, string, Res[], RegExp, 'raw'?];
const XC = 'outbound|31043||corpus.default.svc.cluster.local';
const garbage = (typeUrl: string, name: string): Res => ({
  name,
  typeUrl,
  value: new Uint8Array([0xff, 0xff, 0xff, 0x0f]),
});
const wrongType = (typeUrl: string, r: Res): Res => ({ ...r, typeUrl });
const BAD_XDS: BadXds[] = [
  [
    'EDS host name',
    TYPE.endpoint,
    [loadAssignment(XC, [{ address: 'svc.example', port: 31041 }])],
    /endpoint address "svc\.example" is not an IP literal/,
  ],
  [
    'EDS port 0',
    TYPE.endpoint,
    [loadAssignment(XC, [{ address: '127.0.0.1', port: 0 }])],
    /port 0 out of range 1\.\.65535/,
  ],
  [
    'EDS port 70000',
    TYPE.endpoint,
    [loadAssignment(XC, [{ address: '127.0.0.1', port: 70000 }])],
    /port 70000 out of range/,
  ],
  [
    'EDS weight 5e6',
    TYPE.endpoint,
    [loadAssignment(XC, [{ address: '127.0.0.1', port: 31041, weight: 5_000_000 }])],
    /weight: must be an integer 1\.\.1000000, got 5000000/,
  ],
  ['EDS zone id', TYPE.endpoint, [loadAssignment(XC, [{ address: 'fe80::1%eth0', port: 31041 }])], /fe80::1%eth0/],
  ['EDS garbage bytes', TYPE.endpoint, [garbage(TYPE.endpoint, XC)], /malformed/],
  [
    'EDS carrying a Cluster',
    TYPE.endpoint,
    [wrongType(TYPE.cluster, cluster({ name: XC }))],
    /type .*Cluster in a .*ClusterLoadAssignment response/,
  ],
  [
    'EDS duplicate name',
    TYPE.endpoint,
    [
      loadAssignment(XC, [{ address: '127.0.0.1', port: 31041 }]),
      loadAssignment(XC, [{ address: '127.0.0.1', port: 31044 }]),
    ],
    /duplicate resource name/,
    'raw',
  ],
  ['CDS empty name', TYPE.cluster, [cluster({ name: '' })], /missing name/],
  ['CDS name too long', TYPE.cluster, [cluster({ name: 'x'.repeat(2000) })], /name longer than 1024/],
  ['CDS garbage bytes', TYPE.cluster, [garbage(TYPE.cluster, 'g')], /malformed/],
  [
    'CDS carrying a Listener',
    TYPE.cluster,
    [wrongType(TYPE.listener, tcpListener('127.41.4.3', 31040, XC))],
    /type .*Listener in a .*Cluster response/,
  ],
  [
    'CDS duplicate name',
    TYPE.cluster,
    [cluster({ name: XC }), cluster({ name: XC })],
    /duplicate resource name/,
    'raw',
  ],
  [
    'LDS host name',
    TYPE.listener,
    [tcpListener('vip.example', 31040, XC, 'bad')],
    /address "vip\.example" is not an IP literal/,
  ],
  ['LDS port 0', TYPE.listener, [tcpListener('127.41.4.3', 0, XC, 'bad')], /port 0 out of range/],
  [
    'LDS no weighted clusters',
    TYPE.listener,
    [tcpListener('127.41.4.3', 31040, [], 'bad')],
    /tcp_proxy without cluster or weighted_clusters|no positive weight/,
  ],
  [
    'LDS all weights 0',
    TYPE.listener,
    [tcpListener('127.41.4.3', 31040, [{ cluster: XC, weight: 0 }], 'bad')],
    /no positive weight/,
  ],
  [
    'LDS weighted cluster without name',
    TYPE.listener,
    [tcpListener('127.41.4.3', 31040, [{ cluster: '', weight: 1 }], 'bad')],
    /weighted cluster without a name/,
  ],
  [
    'LDS 17 weighted clusters',
    TYPE.listener,
    [tcpListener('127.41.4.3', 31040, Array(17).fill({ cluster: XC, weight: 1 }), 'bad')],
    /17 weighted clusters \(limit 16\)|at most 16/,
  ],
  [
    'LDS weight 5e6',
    TYPE.listener,
    [
      tcpListener(
        '127.41.4.3',
        31040,
        [
          { cluster: XC, weight: 5_000_000 },
          { cluster: XC, weight: 1 },
        ],
        'bad',
      ),
    ],
    /weight: must be an integer 1\.\.1000000, got 5000000/,
  ],
  ['LDS garbage bytes', TYPE.listener, [garbage(TYPE.listener, 'bad')], /malformed/],
  [
    'LDS duplicate name',
    TYPE.listener,
    [tcpListener('127.41.4.3', 31040, XC, 'bad'), tcpListener('127.41.4.4', 31040, XC, 'bad')],
    /duplicate resource name/,
    'raw',
  ],
];

describe('bad input corpus on a live daemon', () => {
  let cg: TestCgroup;
  let mesh: TestDaemon;
  let dir: string;
  let configPath: string;
  // What the data path reads; entries of superseded generations wait for the grace period, nameless.
  const live = async () => {
    const { maps } = (await mesh.daemon.dumpConfig()) as { maps: ReturnType<typeof dumpMaps> };
    return { listeners: maps.listeners, clusters: maps.clusters.filter((c) => c.name !== null) };
  };

  before(async () => {
    cg = makeCgroup('corpus');
    dir = mkdtempSync(join(tmpdir(), 'kmesh-corpus-'));
    configPath = join(dir, 'kmesh.toml');
    mesh = await startTestDaemon('corpus', `[[services]]\ncgroup = "${cg.path}"\n${A}\n${L([CLUSTER])}\n`, configPath);
  });
  after(async () => {
    await mesh?.destroy();
    cg?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  test(`${BAD_TOML.length} bad kmesh.toml files: each refused with its message, the live maps unchanged`, async () => {
    const header = `[daemon]\nlog_level = "warn"\npin_dir = "${mesh.pinDir}"\n`;
    const before = JSON.stringify(await live());
    const version = mesh.daemon.status().configVersion;
    const wrong: string[] = [];
    for (const [what, body, expected] of BAD_TOML) {
      writeFileSync(configPath, body.includes('[daemon]') ? body : `${header}${body}\n`);
      const message = await mesh.daemon.reload().then(
        () => 'ACCEPTED',
        (err: Error) => err.message,
      );
      if (!/^kmesh\.toml:\d+: /m.test(message) || !expected.test(message)) wrong.push(`${what}: ${message}`);
      if (JSON.stringify(await live()) !== before) wrong.push(`${what}: the live maps changed`);
    }
    assert.deepEqual(wrong, []);
    assert.equal(mesh.daemon.status().configVersion, version);
  });

  test(`${BAD_XDS.length} bad xDS responses: each NACKed naming the problem, the live maps unchanged`, async () => {
    const server = new XdsTestServer('c');
    const port = await server.start();
    let client: XdsClient | undefined;
    try {
      const cfg = parseXdsConfig({ address: `127.0.0.1:${port}` }, (k) => `test: xds.${k}`);
      client = attachXds(mesh.daemon, cfg, pino({ level: 'silent' }));
      const good: Record<string, Res[]> = {
        [TYPE.cluster]: [cluster({ name: XC })],
        [TYPE.endpoint]: [loadAssignment(XC, [{ address: '127.0.0.1', port: 31041 }])],
        [TYPE.listener]: [tcpListener('127.41.4.2', 31040, XC)],
      };
      for (const [type, resources] of Object.entries(good)) server.set(type, resources);
      await server.waitAck(TYPE.listener, 10_000);
      await server.waitAck(TYPE.endpoint, 10_000);
      const wrong: string[] = [];
      for (const [what, type, resources, expected, raw] of BAD_XDS) {
        const before = JSON.stringify(await live());
        const from = server.requests.length;
        if (raw) server.sendResponse(type, `raw-${from}`, resources);
        else server.set(type, resources);
        const reply = await server
          .waitFor((r) => r.typeUrl === type && (r.kind === 'nack' || r.kind === 'ack'), 5000, from)
          .catch(() => undefined);
        const message = reply?.kind === 'nack' ? (reply.errorDetail?.message ?? '') : `not NACKed (${reply?.kind})`;
        if (!expected.test(message)) wrong.push(`${what}: ${message}`);
        if (JSON.stringify(await live()) !== before) wrong.push(`${what}: the live maps changed`);
        server.set(type, good[type] as Res[]);
        await server.waitAck(type, 5000);
      }
      assert.deepEqual(wrong, []);
    } finally {
      await client?.stop();
      await server.stop();
    }
  });
});
