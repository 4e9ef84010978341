/**
 * kmesh.toml → KmeshConfig: the full valid shape, and every bad case the issue names, each
 * asserted by the exact "kmesh.toml:<line>: <key>" it must report.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { KmeshError } from '../../src/contracts/errors.js';
import { loadConfigFile, parseConfig } from '../../src/controller/config/load.js';
import { errorsOf, PATH, toml } from '../support/toml-config.js';

/** Exactly one error, starting with `prefix` ("kmesh.toml:<line>: <path>: ") and containing `detail`. */
function assertOneError(source: string, prefix: string, detail?: string | RegExp): void {
  const errors = errorsOf(source);
  assert.equal(errors.length, 1, `expected one error, got:\n${errors.join('\n')}`);
  const [error = ''] = errors;
  assert.ok(error.startsWith(prefix), `"${error}" does not start with "${prefix}"`);
  if (typeof detail === 'string') assert.ok(error.includes(detail), `"${error}" lacks "${detail}"`);
  else if (detail) assert.match(error, detail);
}

const CLUSTER_A = ['[[clusters]]', 'name = "a"', 'endpoints = [ { address = "127.0.0.1", port = 9081 } ]'];
const LISTENER_A = ['[[listeners]]', 'name = "la"', 'address = "127.10.0.1"', 'port = 9080', 'cluster = "a"'];

describe('parseConfig: a valid config', () => {
  test('full config becomes the model', () => {
    const source = toml(
      '[daemon]',
      'log_level = "debug"',
      'pin_dir = "/sys/fs/bpf/kmesh-x"',
      'access_log = true',
      'rescan_interval_ms = 250',
      '',
      '[metrics]',
      'listen = "127.0.0.1:15020"',
      '',
      '[[services]]',
      'unit = "orders.service"',
      '[[services]]',
      'cgroup = "/sys/fs/cgroup/unified/x"',
      '',
      '[[clusters]]',
      'name = "reviews-v1"',
      'lb_policy = "round_robin"',
      'endpoints = [',
      '  { address = "127.0.0.1", port = 9081, weight = 3 },',
      '  { address = "127.0.0.2", port = 9082 },',
      ']',
      '[[clusters]]',
      'name = "reviews-v2"',
      'lb_policy = "random"',
      'endpoints = [ { address = "::1", port = 9083, weight = 2 } ]',
      '',
      '[[listeners]]',
      'name = "reviews"',
      'address = "127.10.0.5"',
      'port = 9080',
      'protocol = "tcp"',
      'weighted_clusters = [ { cluster = "reviews-v1", weight = 90 }, { cluster = "reviews-v2", weight = 10 } ]',
      '[[listeners]]',
      'name = "dns"',
      'address = "127.10.0.5"',
      'port = 9080',
      'protocol = "udp"',
      'cluster = "reviews-v1"',
      '[[listeners]]',
      'name = "web6"',
      'address = "fd00::5"',
      'port = 80',
      'protocol = "http"',
      'cluster = "reviews-v2"',
    );
    const config = parseConfig(source, PATH);
    assert.deepEqual(config, {
      path: PATH,
      daemon: { logLevel: 'debug', pinDir: '/sys/fs/bpf/kmesh-x', accessLog: true, rescanIntervalMs: 250 },
      metrics: { listen: '127.0.0.1:15020' },
      services: [{ unit: 'orders.service' }, { cgroup: '/sys/fs/cgroup/unified/x' }],
      model: {
        clusters: [
          {
            name: 'reviews-v1',
            lbPolicy: 'round_robin',
            endpoints: [
              { address: '127.0.0.1', port: 9081, weight: 3 },
              { address: '127.0.0.2', port: 9082, weight: 1 },
            ],
            source: 'toml',
          },
          {
            name: 'reviews-v2',
            lbPolicy: 'random',
            endpoints: [{ address: '::1', port: 9083, weight: 2 }],
            source: 'toml',
          },
        ],
        listeners: [
          {
            name: 'reviews',
            address: '127.10.0.5',
            port: 9080,
            protocol: 'tcp',
            routes: [
              { cluster: 'reviews-v1', weight: 90 },
              { cluster: 'reviews-v2', weight: 10 },
            ],
            source: 'toml',
          },
          {
            name: 'dns',
            address: '127.10.0.5',
            port: 9080,
            protocol: 'udp',
            routes: [{ cluster: 'reviews-v1', weight: 1 }],
            source: 'toml',
          },
          {
            name: 'web6',
            address: 'fd00::5',
            port: 80,
            protocol: 'http',
            routes: [{ cluster: 'reviews-v2', weight: 1 }],
            source: 'toml',
          },
        ],
      },
    });
  });

  test('defaults: empty file', () => {
    const config = parseConfig('', PATH);
    assert.deepEqual(config, {
      path: PATH,
      daemon: { logLevel: 'info', pinDir: '/sys/fs/bpf/kmesh', accessLog: false, rescanIntervalMs: 1000 },
      services: [],
      model: { clusters: [], listeners: [] },
    });
  });

  test('[xds] is parsed by the xDS config parser', () => {
    const config = parseConfig(
      toml(
        '[xds]',
        'address = "istiod.example:15010"',
        'node_id = "sidecar~192.0.2.5~vm1.default~default.svc.cluster.local"',
      ),
      PATH,
    );
    assert.equal(config.xds?.address, 'istiod.example:15010');
    assert.equal(config.xds?.nodeId, 'sidecar~192.0.2.5~vm1.default~default.svc.cluster.local');
    assert.equal(config.xds?.tls, false);
  });
});

describe('parseConfig: each bad case names file, line and key', () => {
  test('TOML syntax error carries its line', () => {
    assertOneError(toml('[daemon]', 'log_level = "info"', 'pin_dir = ', ''), 'kmesh.toml:3: TOML syntax error');
  });

  test('unknown top-level section', () => {
    assertOneError(
      toml('[daemon]', 'log_level = "info"', '', '[bogus]', 'x = 1'),
      'kmesh.toml:4: bogus: unknown section',
    );
  });

  test('unknown top-level key before any table', () => {
    assertOneError(toml('loglevel = "info"', '[daemon]'), 'kmesh.toml:1: loglevel: unknown section');
  });

  test('unknown key in [daemon]', () => {
    assertOneError(
      toml('[daemon]', 'log_level = "info"', 'loglevel = "debug"'),
      'kmesh.toml:3: daemon.loglevel: unknown key',
    );
  });

  test('bad log level', () => {
    assertOneError(toml('[daemon]', 'log_level = "loud"'), 'kmesh.toml:2: daemon.log_level: must be one of', '"loud"');
  });

  test('unknown key in a [[clusters]] entry', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        '[[clusters]]',
        'name = "b"',
        'lbpolicy = "random"',
        'endpoints = [ { address = "127.0.0.1", port = 1 } ]',
      ),
      'kmesh.toml:6: clusters[1].lbpolicy: unknown key',
    );
  });

  test('unknown key inside an endpoint inline table', () => {
    assertOneError(
      toml(
        '[[clusters]]',
        'name = "a"',
        'endpoints = [',
        '  { address = "127.0.0.1", port = 1 },',
        '  { address = "127.0.0.1", prot = 2, port = 3 },',
        ']',
      ),
      'kmesh.toml:3: clusters[0].endpoints[1].prot: unknown key',
    );
  });

  test('endpoint address 127.0.0.300', () => {
    assertOneError(
      toml('[[clusters]]', 'name = "a"', 'endpoints = [ { address = "127.0.0.300", port = 9081 } ]'),
      'kmesh.toml:3: clusters[0].endpoints[0].address: ',
      '"127.0.0.300"',
    );
  });

  test('endpoint address example.com', () => {
    assertOneError(
      toml('[[clusters]]', 'name = "a"', 'endpoints = [ { address = "example.com", port = 9081 } ]'),
      'kmesh.toml:3: clusters[0].endpoints[0].address: ',
      '"example.com"',
    );
  });

  test('listener address example.com', () => {
    assertOneError(
      toml(...CLUSTER_A, '[[listeners]]', 'name = "la"', 'address = "example.com"', 'port = 80', 'cluster = "a"'),
      'kmesh.toml:6: listeners[0].address: ',
      '"example.com"',
    );
  });

  for (const [port, detail] of [
    ['0', 'got 0'],
    ['70000', 'got 70000'],
    ['"80"', 'got "80"'],
  ] as const) {
    test(`endpoint port ${port}`, () => {
      assertOneError(
        toml('[[clusters]]', 'name = "a"', `endpoints = [ { address = "127.0.0.1", port = ${port} } ]`),
        'kmesh.toml:3: clusters[0].endpoints[0].port: ',
        detail,
      );
    });
    test(`listener port ${port}`, () => {
      assertOneError(
        toml(...CLUSTER_A, '[[listeners]]', 'name = "la"', 'address = "127.10.0.1"', `port = ${port}`, 'cluster = "a"'),
        'kmesh.toml:7: listeners[0].port: ',
        detail,
      );
    });
  }

  test('duplicate cluster names', () => {
    assertOneError(
      toml(...CLUSTER_A, '[[clusters]]', 'name = "a"', 'endpoints = [ { address = "127.0.0.2", port = 1 } ]'),
      'kmesh.toml:5: clusters[1].name: duplicate cluster name "a"',
    );
  });

  test('duplicate listener names', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        ...LISTENER_A,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.2"',
        'port = 9080',
        'cluster = "a"',
      ),
      'kmesh.toml:10: listeners[1].name: duplicate listener name "la"',
    );
  });

  test('tcp and http on the same address:port clash', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        ...LISTENER_A,
        '[[listeners]]',
        'name = "lb"',
        'address = "127.10.0.1"',
        'port = 9080',
        'protocol = "http"',
        'cluster = "a"',
      ),
      'kmesh.toml:11: listeners[1].address: 127.10.0.1:9080/tcp is already used by listener "la"',
    );
  });

  test('tcp and udp on the same address:port do not clash', () => {
    const config = parseConfig(
      toml(
        ...CLUSTER_A,
        ...LISTENER_A,
        '[[listeners]]',
        'name = "lb"',
        'address = "127.10.0.1"',
        'port = 9080',
        'protocol = "udp"',
        'cluster = "a"',
      ),
      PATH,
    );
    assert.deepEqual(
      config.model.listeners.map((l) => l.protocol),
      ['tcp', 'udp'],
    );
  });

  test('listener pointing at an unknown cluster', () => {
    assertOneError(
      toml(...CLUSTER_A, '[[listeners]]', 'name = "la"', 'address = "127.10.0.1"', 'port = 9080', 'cluster = "nope"'),
      'kmesh.toml:8: listeners[0].cluster: unknown cluster "nope"',
    );
  });

  test('weighted cluster pointing at an unknown cluster', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.1"',
        'port = 9080',
        'weighted_clusters = [ { cluster = "a", weight = 1 }, { cluster = "nope", weight = 1 } ]',
      ),
      'kmesh.toml:8: listeners[0].weighted_clusters[1]: unknown cluster "nope"',
    );
  });

  test('listener with both cluster and weighted_clusters', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.1"',
        'port = 9080',
        'cluster = "a"',
        'weighted_clusters = [ { cluster = "a", weight = 1 } ]',
      ),
      'kmesh.toml:4: listeners[0]: needs exactly one of cluster',
    );
  });

  test('listener with neither cluster nor weighted_clusters', () => {
    assertOneError(
      toml(...CLUSTER_A, '[[listeners]]', 'name = "la"', 'address = "127.10.0.1"', 'port = 9080'),
      'kmesh.toml:4: listeners[0]: needs exactly one of cluster',
    );
  });

  for (const weight of [0, -5]) {
    test(`endpoint weight ${weight}`, () => {
      assertOneError(
        toml('[[clusters]]', 'name = "a"', `endpoints = [ { address = "127.0.0.1", port = 1, weight = ${weight} } ]`),
        'kmesh.toml:3: clusters[0].endpoints[0].weight: ',
        `got ${weight}`,
      );
    });

    test(`weighted cluster weight ${weight}`, () => {
      assertOneError(
        toml(
          ...CLUSTER_A,
          '[[clusters]]',
          'name = "b"',
          'endpoints = [ { address = "127.0.0.1", port = 2 } ]',
          '[[listeners]]',
          'name = "la"',
          'address = "127.10.0.1"',
          'port = 9080',
          `weighted_clusters = [ { cluster = "a", weight = 5 }, { cluster = "b", weight = ${weight} } ]`,
        ),
        'kmesh.toml:11: listeners[0].weighted_clusters[1].weight: ',
        `got ${weight}`,
      );
    });
  }

  test('a single weighted cluster with weight 0 is reported at weighted_clusters', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.1"',
        'port = 9080',
        'weighted_clusters = [ { cluster = "a", weight = 0 } ]',
      ),
      'kmesh.toml:8: listeners[0].weighted_clusters[0].weight: ',
      'got 0',
    );
  });

  test('an empty weighted_clusters is reported at weighted_clusters', () => {
    assertOneError(
      toml(
        ...CLUSTER_A,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.1"',
        'port = 9080',
        'weighted_clusters = []',
      ),
      'kmesh.toml:8: listeners[0].weighted_clusters: ',
    );
  });

  test('empty endpoint set', () => {
    assertOneError(
      toml('[[clusters]]', 'name = "a"', 'endpoints = []'),
      'kmesh.toml:3: clusters[0].endpoints: the endpoint set is empty',
    );
  });

  test('missing endpoints', () => {
    assertOneError(toml('[[clusters]]', 'name = "a"'), 'kmesh.toml:1: clusters[0].endpoints: is required');
  });

  test('unknown lb_policy', () => {
    assertOneError(
      toml(
        '[[clusters]]',
        'name = "a"',
        'lb_policy = "fastest"',
        'endpoints = [ { address = "127.0.0.1", port = 1 } ]',
      ),
      'kmesh.toml:3: clusters[0].lb_policy: must be one of round_robin, random, least_request, maglev, ring_hash',
      '"fastest"',
    );
  });

  test('unknown protocol', () => {
    assertOneError(
      toml(...CLUSTER_A, ...LISTENER_A, 'protocol = "sctp"'),
      'kmesh.toml:9: listeners[0].protocol: must be one of tcp, udp, http',
      '"sctp"',
    );
  });

  test('more than 16 weighted clusters', () => {
    const clusters = Array.from({ length: 17 }, (_, i) => [
      '[[clusters]]',
      `name = "c${i}"`,
      'endpoints = [ { address = "127.0.0.1", port = 1 } ]',
    ]).flat();
    const routes = Array.from({ length: 17 }, (_, i) => `{ cluster = "c${i}", weight = 1 }`).join(', ');
    // 17 clusters × 3 lines = 51; the listener header is line 52, weighted_clusters line 56.
    assertOneError(
      toml(
        ...clusters,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.1"',
        'port = 9080',
        `weighted_clusters = [ ${routes} ]`,
      ),
      'kmesh.toml:56: listeners[0].weighted_clusters: at most 16 clusters, got 17',
    );
  });

  test('exactly 16 weighted clusters are fine', () => {
    const clusters = Array.from({ length: 16 }, (_, i) => [
      '[[clusters]]',
      `name = "c${i}"`,
      'endpoints = [ { address = "127.0.0.1", port = 1 } ]',
    ]).flat();
    const routes = Array.from({ length: 16 }, (_, i) => `{ cluster = "c${i}", weight = 1 }`).join(', ');
    const config = parseConfig(
      toml(
        ...clusters,
        '[[listeners]]',
        'name = "la"',
        'address = "127.10.0.1"',
        'port = 9080',
        `weighted_clusters = [ ${routes} ]`,
      ),
      PATH,
    );
    assert.equal(config.model.listeners[0]?.routes.length, 16);
  });

  test('service with both unit and cgroup', () => {
    assertOneError(
      toml('[[services]]', 'unit = "a.service"', '[[services]]', 'unit = "b.service"', 'cgroup = "/sys/fs/cgroup/x"'),
      'kmesh.toml:3: services[1]: needs exactly one of unit',
    );
  });

  test('service with neither unit nor cgroup', () => {
    assertOneError(
      toml('[[services]]', 'unit = "a.service"', '[[services]]'),
      'kmesh.toml:3: services[1]: needs exactly one of unit',
    );
  });

  test('service with a bad unit name', () => {
    assertOneError(
      toml('[[services]]', 'unit = "orders"'),
      'kmesh.toml:2: services[0].unit: not a systemd unit name',
      '"orders"',
    );
  });

  test('unknown key in a service', () => {
    assertOneError(
      toml('[[services]]', 'unit = "a.service"', 'user = "root"'),
      'kmesh.toml:3: services[0].user: unknown key',
    );
  });

  test('duplicate service unit', () => {
    assertOneError(
      toml('[[services]]', 'unit = "a.service"', '[[services]]', 'unit = "a.service"'),
      'kmesh.toml:4: services[1].unit: "a.service" is registered twice',
    );
  });

  test('duplicate service cgroup', () => {
    assertOneError(
      toml('[[services]]', 'cgroup = "/sys/fs/cgroup/x"', '[[services]]', 'cgroup = "/sys/fs/cgroup/x"'),
      'kmesh.toml:4: services[1].cgroup: "/sys/fs/cgroup/x" is registered twice',
    );
  });

  test('duplicate service after an invalid one names the duplicate entry', () => {
    const errors = errorsOf(
      toml('[[services]]', '[[services]]', 'unit = "a.service"', '[[services]]', 'unit = "a.service"'),
    );
    assert.deepEqual(errors.length, 2, errors.join('\n'));
    assert.ok(errors[0]?.startsWith('kmesh.toml:1: services[0]: needs exactly one of unit'), errors[0]);
    assert.ok(errors[1]?.startsWith('kmesh.toml:5: services[2].unit: "a.service" is registered twice'), errors[1]);
  });

  for (const pinDir of ['/tmp/kmesh', '/sys/fs/bpfx/kmesh']) {
    test(`pin_dir ${pinDir} outside /sys/fs/bpf`, () => {
      assertOneError(
        toml('[daemon]', `pin_dir = "${pinDir}"`),
        'kmesh.toml:2: daemon.pin_dir: must be a directory below /sys/fs/bpf/',
      );
    });
  }

  for (const pinDir of ['/sys/fs/bpf/', '/sys/fs/bpf/../../../tmp/x', '/sys/fs/bpf/kmesh/..']) {
    test(`pin_dir ${pinDir} does not name a directory below /sys/fs/bpf`, () => {
      assertOneError(
        toml('[daemon]', `pin_dir = "${pinDir}"`),
        'kmesh.toml:2: daemon.pin_dir: must be a directory below /sys/fs/bpf/',
      );
    });
  }

  for (const listen of ['15020', 'localhost', '0.0.0.0:', '0.0.0.0:15020/metrics']) {
    test(`metrics.listen "${listen}" is not host:port`, () => {
      assertOneError(
        toml('[daemon]', 'log_level = "info"', '[metrics]', `listen = "${listen}"`),
        'kmesh.toml:4: metrics.listen: must be host:port',
      );
    });
  }

  test('metrics.listen with port 99999', () => {
    assertOneError(toml('[metrics]', 'listen = "127.0.0.1:99999"'), 'kmesh.toml:2: metrics.listen: ');
  });

  test('metrics.listen accepts [::1]:15020 and localhost:15020', () => {
    assert.equal(parseConfig(toml('[metrics]', 'listen = "[::1]:15020"'), PATH).metrics?.listen, '[::1]:15020');
    assert.equal(parseConfig(toml('[metrics]', 'listen = "localhost:15020"'), PATH).metrics?.listen, 'localhost:15020');
  });

  test('unknown key in [metrics]', () => {
    assertOneError(
      toml('[metrics]', 'listen = "127.0.0.1:15020"', 'path = "/m"'),
      'kmesh.toml:3: metrics.path: unknown key',
    );
  });

  test('[xds] with an unknown key', () => {
    assertOneError(
      toml('[daemon]', 'log_level = "info"', '[xds]', 'address = "istiod:15010"', 'nodeid = "x"'),
      'kmesh.toml:5: xds.nodeid: unknown key',
    );
  });

  test('[xds] with a bad address', () => {
    assertOneError(toml('[xds]', 'address = "istiod"'), 'kmesh.toml:2: xds.address: must be host:port');
  });
});

describe('parseConfig: several errors', () => {
  test('every field-level error in one file is reported', () => {
    const errors = errorsOf(
      toml(
        '[daemon]', // 1
        'loglevel = "debug"', // 2
        '[metrics]', // 3
        'listen = "nope"', // 4
        '[[clusters]]', // 5
        'name = "a"', // 6
        'lb_policy = "fastest"', // 7
        'endpoints = [ { address = "127.0.0.1", port = "80", extra = 1 } ]', // 8
        '[[listeners]]', // 9
        'name = "la"', // 10
        'address = "127.10.0.1"', // 11
        'port = 80', // 12
        'protocol = "sctp"', // 13
        'cluster = "a"', // 14
      ),
    );
    assert.deepEqual(
      errors.map((e) => e.split(': ').slice(0, 2).join(': ')),
      [
        'kmesh.toml:2: daemon.loglevel',
        'kmesh.toml:4: metrics.listen',
        'kmesh.toml:7: clusters[0].lb_policy',
        'kmesh.toml:8: clusters[0].endpoints[0].port',
        'kmesh.toml:8: clusters[0].endpoints[0].extra',
        'kmesh.toml:13: listeners[0].protocol',
      ],
    );
  });

  test('every semantic error in one file is reported', () => {
    const errors = errorsOf(
      toml(
        '[[clusters]]', // 1
        'name = "a"', // 2
        'endpoints = [ { address = "127.0.0.300", port = 0, weight = 0 } ]', // 3
        '[[clusters]]', // 4
        'name = "a"', // 5
        'endpoints = []', // 6
        '[[listeners]]', // 7
        'name = "la"', // 8
        'address = "example.com"', // 9
        'port = 70000', // 10
        'cluster = "nope"', // 11
      ),
    );
    assert.deepEqual(
      errors.map((e) => e.split(': ').slice(0, 2).join(': ')),
      [
        'kmesh.toml:3: clusters[0].endpoints[0].address',
        'kmesh.toml:3: clusters[0].endpoints[0].port',
        'kmesh.toml:3: clusters[0].endpoints[0].weight',
        'kmesh.toml:5: clusters[1].name',
        'kmesh.toml:6: clusters[1].endpoints',
        'kmesh.toml:9: listeners[0].address',
        'kmesh.toml:10: listeners[0].port',
        'kmesh.toml:11: listeners[0].cluster',
      ],
    );
  });

  // load.ts runs the semantic pass only when the field pass found nothing (by design, see its comment).
  test('field-level and semantic errors in one file are all reported', () => {
    const errors = errorsOf(
      toml(
        '[daemon]', // 1
        'loglevel = "debug"', // 2
        ...CLUSTER_A, // 3-5
        '[[listeners]]', // 6
        'name = "la"', // 7
        'address = "127.10.0.1"', // 8
        'port = 9080', // 9
        'cluster = "nope"', // 10
      ),
    );
    assert.deepEqual(
      errors.map((e) => e.split(': ').slice(0, 2).join(': ')),
      ['kmesh.toml:2: daemon.loglevel', 'kmesh.toml:10: listeners[0].cluster'],
    );
  });
});

describe('loadConfigFile', () => {
  test('a missing file is InvalidConfig naming the path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kmesh-config-test-'));
    try {
      const path = join(dir, 'missing.toml');
      assert.throws(
        () => loadConfigFile(path),
        (err: unknown) =>
          err instanceof KmeshError &&
          err.code === 'InvalidConfig' &&
          err.message.startsWith(`${path}: cannot read: `) &&
          err.message.includes('ENOENT'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('kmesh.toml: resilience keys on [[clusters]]', () => {
  const cluster = (...keys: string[]) =>
    toml(
      '[[clusters]]',
      'name = "r"',
      'lb_policy = "maglev"',
      'endpoints = [ { address = "127.0.0.1", port = 9081, priority = 1, locality = "eu/a" },',
      '              { address = "127.0.0.2", port = 9081, locality = "eu/b" } ]',
      ...keys,
    );

  test('every key read into the model, Envoy defaults filled in', () => {
    const config = parseConfig(
      cluster(
        'outlier_detection = { consecutive_failures = 3, base_ejection_time_ms = 1000 }',
        'max_connections = 100',
        'max_pending_requests = 10',
        'max_requests = 20',
        'connect_timeout_ms = 500',
        'hash_key = "cgroup_and_source_address"',
        'locality_weights = [ { locality = "eu/a", weight = 1 }, { locality = "eu/b", weight = 2 } ]',
      ),
      PATH,
    );
    const c = config.model.clusters[0];
    assert.deepEqual(c?.outlierDetection, {
      consecutiveFailures: 3,
      baseEjectionTimeMs: 1000,
      maxEjectionTimeMs: 300_000,
      maxEjectionPercent: 10,
      intervalMs: 10_000,
    });
    assert.equal(c?.maxConnections, 100);
    assert.equal(c?.maxPendingRequests, 10);
    assert.equal(c?.maxRequests, 20);
    assert.equal(c?.connectTimeoutMs, 500);
    assert.equal(c?.hashKey, 'cgroup_and_source_address');
    assert.deepEqual(c?.endpoints[0]?.locality, { region: 'eu', zone: 'a' });
    assert.equal(c?.endpoints[0]?.priority, 1);
    assert.deepEqual(c?.localityWeights?.[1], { locality: { region: 'eu', zone: 'b' }, weight: 2 });
  });

  const bad: Array<[string, string, string]> = [
    [
      'outlier_detection = { max_ejection_percent = 0 }',
      'clusters[0].outlier_detection.max_ejection_percent',
      '1..100, got 0',
    ],
    [
      'outlier_detection = { max_ejection_percent = 200 }',
      'clusters[0].outlier_detection.max_ejection_percent',
      'got 200',
    ],
    [
      'outlier_detection = { base_ejection_time_ms = -5 }',
      'clusters[0].outlier_detection.base_ejection_time_ms',
      'got -5',
    ],
    ['outlier_detection = { consecutive_failures = 0 }', 'clusters[0].outlier_detection.consecutive_failures', 'got 0'],
    ['outlier_detection = { intervall_ms = 5 }', 'clusters[0].outlier_detection.intervall_ms', 'unknown key'],
    ['max_connections = 0', 'clusters[0].max_connections', 'got 0'],
    ['max_pending_requests = 0', 'clusters[0].max_pending_requests', 'got 0'],
    ['max_requests = -3', 'clusters[0].max_requests', 'got -3'],
    ['connect_timeout_ms = -1', 'clusters[0].connect_timeout_ms', 'got -1'],
    ['hash_key = "header"', 'clusters[0].hash_key', 'must be one of cgroup, source_address'],
    [
      'locality_weights = [ { locality = "eu/a", weight = 1 }, { locality = "eu/b", weight = 1 }, { locality = "us/x", weight = 1 } ]',
      'clusters[0].locality_weights',
      'locality "us/x" has no endpoint',
    ],
  ];
  for (const [line, key, detail] of bad) {
    test(`${line} → ${key}`, () => assertOneError(cluster(line), `kmesh.toml:6: ${key}: `, detail));
  }

  test('hash_key on a policy that does not hash', () => {
    assertOneError(
      toml(
        '[[clusters]]',
        'name = "r"',
        'endpoints = [ { address = "127.0.0.1", port = 9081 } ]',
        'hash_key = "cgroup"',
      ),
      'kmesh.toml:4: clusters[0].hash_key: ',
      'applies to lb_policy maglev or ring_hash',
    );
  });

  test('priority 9 and a malformed locality name the endpoint', () => {
    const errors = errorsOf(
      toml(
        '[[clusters]]',
        'name = "r"',
        'endpoints = [ { address = "127.0.0.1", port = 9081, priority = 9 }, { address = "127.0.0.2", port = 1, locality = "a//b" } ]',
      ),
    );
    assert.deepEqual(errors, [
      'kmesh.toml:3: clusters[0].endpoints[1].locality: must be "region", "region/zone" or "region/zone/subzone", got "a//b"',
    ]);
    assertOneError(
      toml('[[clusters]]', 'name = "r"', 'endpoints = [ { address = "127.0.0.1", port = 9081, priority = 9 } ]'),
      'kmesh.toml:3: clusters[0].endpoints[0].priority: ',
      'must be an integer 0..7, got 9',
    );
  });
});
