/**
 * Failover by the daemon's own locality (Istio's localityLbSetting) and the CLA overprovisioning factor:
 * the ranking, the levels and their encoding, the TOML keys, the xDS fields and the node sent to istiod.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildNode, parseXdsConfig } from '../../src/api/xds/config.js';
import { emptyState } from '../../src/api/xds/convert.js';
import { decodeCluster, decodeLoadAssignment } from '../../src/api/xds/decode.js';
import { convert } from '../../src/api/xds/model-builder.js';
import { TYPE, xdsTypes } from '../../src/api/xds/protos.js';
import { XdsResourceError } from '../../src/api/xds/resources.js';
import { parseConfig } from '../../src/controller/config/load.js';
import { encodeLevels, layoutCluster } from '../../src/controller/resilience-encoding.js';
import type { Cluster, Endpoint, LocalityFailover } from '../../src/model/types.js';
import {
  failoverRank,
  localityRank,
  parseFailoverPriorityLabel,
  parseLocality,
} from '../../src/model/validate-resilience.js';
import { levels } from '../../src/runtime/maps/layouts.js';
import { cluster as xdsCluster } from '../fixtures/xds-server.js';
import { errorsOf, PATH, toml } from '../support/toml-config.js';

const loc = (text: string) => parseLocality(text) ?? assert.fail(text);
const ep = (port: number, locality?: string, priority?: number): Endpoint => ({
  address: '10.0.0.1',
  port,
  weight: 1,
  ...(locality ? { locality: loc(locality) } : {}),
  ...(priority ? { priority } : {}),
});
const od = {
  consecutiveFailures: 5,
  baseEjectionTimeMs: 30_000,
  maxEjectionTimeMs: 300_000,
  maxEjectionPercent: 10,
  intervalMs: 10_000,
};

const failoverCluster = (localityFailover: LocalityFailover | undefined, endpoints: Endpoint[]): Cluster => ({
  name: 'c',
  lbPolicy: 'round_robin',
  source: 'toml',
  outlierDetection: od,
  ...(localityFailover ? { localityFailover } : {}),
  endpoints,
});

/** The source is refused with exactly one error, starting with `expected`. */
function assertOneError(source: string, expected: string): void {
  const errors = errorsOf(source);
  assert.equal(errors.length, 1, errors.join('\n'));
  assert.ok(errors[0]?.startsWith(expected), `${errors[0]} does not start with ${expected}`);
}

describe('locality failover: ranking and levels', () => {
  test('istiod ranks: same subzone 0, same zone 1, same region 2, elsewhere (or no locality) 3', () => {
    const own = loc('eu/a/1');
    assert.equal(localityRank(own, loc('eu/a/1')), 0);
    assert.equal(localityRank(own, loc('eu/a/2')), 1);
    assert.equal(localityRank(own, loc('eu/b/1')), 2);
    assert.equal(localityRank(own, loc('us/a/1')), 3);
    assert.equal(localityRank(own, undefined), 3);
    // absent parts compare equal, as istiod compares empty strings
    assert.equal(localityRank(loc('eu'), loc('eu')), 0);
    assert.equal(localityRank(loc('eu/a'), loc('eu/a/1')), 1);
  });

  test('levels: by priority, then by locality match within it; the configured order within a level', () => {
    const cluster = failoverCluster({ own: loc('eu/a/1') }, [
      ep(1, 'us/x'),
      ep(2, 'eu/a/2'),
      ep(3, 'eu/a/1'),
      ep(4, 'eu/a/1', 1),
      ep(5, 'eu/b'),
      ep(6, 'eu/a/1'),
    ]);
    const layout = layoutCluster(cluster);
    assert.deepEqual(
      layout.endpoints.map((e) => e.port),
      [3, 6, 2, 5, 1, 4],
    );
    assert.deepEqual(layout.levelOf, [0, 0, 1, 2, 3, 4]);
    // without the daemon's locality the same endpoints are two levels: the priorities
    const plain = layoutCluster(failoverCluster(undefined, cluster.endpoints));
    assert.deepEqual(plain.levelOf, [0, 0, 0, 0, 0, 1]);
  });

  test('the overprovisioning factor travels in kmesh_levels (0: the kernel default 140)', () => {
    const cluster: Cluster = {
      name: 'c',
      lbPolicy: 'random',
      source: 'xds',
      endpoints: [ep(1), ep(2, undefined, 1)],
    };
    const cum = [1, 2];
    const decode = (c: Cluster) => levels.decode(encodeLevels(layoutCluster(c), cum) ?? assert.fail('no levels'));
    assert.equal(decode(cluster).overprovisioning_pct, 0);
    assert.equal(decode({ ...cluster, overprovisioningFactor: 100 }).overprovisioning_pct, 100);
  });
});

describe('kmesh.toml: [daemon] locality, locality_failover, overprovisioning_factor', () => {
  const endpoints =
    'endpoints = [ { address = "127.0.0.1", port = 1, locality = "eu/a/1" }, { address = "127.0.0.2", port = 1, locality = "eu/b" } ]';
  const withDaemon = (...clusterLines: string[]) =>
    toml('[daemon]', 'locality = "eu/a/1"', '[[clusters]]', 'name = "c"', endpoints, ...clusterLines);

  test('clusters with outlier detection fail over by the daemon locality; others, or opted out, do not', () => {
    const config = parseConfig(
      toml(
        '[daemon]',
        'locality = "eu/a/1"',
        '[[clusters]]',
        'name = "od"',
        endpoints,
        'outlier_detection = {}',
        'overprovisioning_factor = 120',
        '[[clusters]]',
        'name = "plain"',
        endpoints,
        '[[clusters]]',
        'name = "out"',
        endpoints,
        'outlier_detection = {}',
        'locality_failover = false',
      ),
      PATH,
    );
    assert.deepEqual(config.daemon.locality, { region: 'eu', zone: 'a', subZone: '1' });
    const [odc, plain, out] = config.model.clusters;
    assert.deepEqual(odc?.localityFailover?.own, { region: 'eu', zone: 'a', subZone: '1' });
    assert.equal(odc?.overprovisioningFactor, 120);
    assert.equal(plain?.localityFailover, undefined);
    assert.equal(out?.localityFailover, undefined);
  });

  test('the daemon locality becomes the xDS node locality', () => {
    const config = parseConfig(toml('[daemon]', 'locality = "eu/a/1"', '[xds]', 'address = "127.0.0.1:15010"'), PATH);
    assert.deepEqual(config.xds?.locality, { region: 'eu', zone: 'a', subZone: '1' });
    const node = buildNode(config.xds ?? assert.fail('no xds'), '1') as { locality?: unknown };
    assert.deepEqual(node.locality, { region: 'eu', zone: 'a', subZone: '1' });
    const t = xdsTypes().root.lookupType('envoy.config.core.v3.Node');
    const wire = t.toObject(t.decode(t.encode(t.fromObject(node)).finish())) as { locality?: unknown };
    assert.deepEqual(wire.locality, { region: 'eu', zone: 'a', subZone: '1' }, 'survives protobuf encoding');
    assert.equal(
      (
        buildNode(
          parseXdsConfig({ address: '127.0.0.1:1' }, (k) => k),
          '1',
        ) as { locality?: unknown }
      ).locality,
      undefined,
    );
  });

  const bad: Array<[string, string[], string]> = [
    [
      "kmesh.toml:5: clusters[0].locality_failover: needs the daemon's own locality",
      ['[[clusters]]', 'name = "c"', endpoints, 'outlier_detection = {}', 'locality_failover = true'],
      '',
    ],
    [
      'kmesh.toml:6: clusters[0].locality_failover: needs outlier_detection',
      ['[daemon]', 'locality = "eu/a/1"', '[[clusters]]', 'name = "c"', endpoints, 'locality_failover = true'],
      '',
    ],
    [
      'kmesh.toml:2: daemon.locality: must be "region", "region/zone" or "region/zone/subzone"',
      ['[daemon]', 'locality = "eu//1"'],
      '',
    ],
    [
      'kmesh.toml:6: clusters[0].overprovisioning_factor: must be an integer 1..10000, got 0',
      [],
      'overprovisioning_factor = 0',
    ],
  ];
  for (const [expected, lines, extra] of bad) {
    test(expected, () => assertOneError(lines.length > 0 ? toml(...lines) : withDaemon(extra), expected));
  }

  test('more than 8 levels (priorities × locality matches) are refused naming the cluster', () => {
    const many = Array.from(
      { length: 3 },
      (_, p) =>
        `{ address = "127.0.0.${p + 1}", port = 1, priority = ${p}, locality = "eu/a/1" }, { address = "127.0.1.${p + 1}", port = 1, priority = ${p}, locality = "eu/b" }, { address = "127.0.2.${p + 1}", port = 1, priority = ${p}, locality = "us" }`,
    ).join(', ');
    const errors = errorsOf(
      toml(
        '[daemon]',
        'locality = "eu/a/1"',
        '[[clusters]]',
        'name = "c"',
        `endpoints = [ ${many} ]`,
        'outlier_detection = {}',
      ),
    );
    assert.deepEqual(errors, [
      'kmesh.toml:3: clusters[0].locality_failover: priorities × locality matches make 9 failover levels, the kernel keeps 8',
    ]);
  });
});

describe("locality failover: Istio's failover and failoverPriority lists", () => {
  const own = loc('eu/a/1');
  const rankOf = (lf: Omit<LocalityFailover, 'own'>, at?: string) =>
    failoverRank({ own, ...lf }, at ? loc(at) : undefined);
  const labels = (...texts: string[]) => texts.map((t) => parseFailoverPriorityLabel(t) ?? assert.fail(t));

  test('failover: from the daemon region, its `to` keeps rank 3 and every other region drops to 4', () => {
    const regions = [
      { from: 'us', to: 'ap' },
      { from: 'eu', to: 'us' },
    ];
    assert.deepEqual(
      ['eu/a/1', 'eu/a/2', 'eu/b', 'us/x', 'ap/y'].map((at) => rankOf({ regions }, at)),
      [0, 1, 2, 3, 4],
    );
    assert.equal(rankOf({ regions }), 4, 'no locality is not the `to` region');
    // no entry from the daemon's region: the default ranking
    assert.equal(rankOf({ regions: [{ from: 'us', to: 'ap' }] }, 'ap/y'), 3);
  });

  test('failoverPriority: labels matched in order, 0 when all match; =value replaces the daemon value', () => {
    const priority = labels('topology.kubernetes.io/region', 'topology.kubernetes.io/zone');
    assert.deepEqual(
      ['eu/a/9', 'eu/b', 'us/a'].map((at) => rankOf({ priority }, at)),
      [0, 1, 2],
    );
    const pinned = labels('region=us', 'zone');
    assert.deepEqual(
      ['us/a', 'us/b', 'eu/a'].map((at) => rankOf({ priority: pinned }, at)),
      [0, 1, 2],
    );
    // with `failover` too, the region ranks order each failoverPriority rank (as istiod: rank × 5 + region rank)
    const both = rankOf({ priority: labels('zone'), regions: [{ from: 'eu', to: 'us' }] }, 'ap/a');
    assert.equal(both, 4);
    assert.equal(rankOf({ priority: labels('zone'), regions: [{ from: 'eu', to: 'us' }] }, 'us/b'), 5 + 3);
  });

  test('levels: with a failover region, the `to` region comes before the other regions', () => {
    const cluster = failoverCluster({ own, regions: [{ from: 'eu', to: 'ap' }] }, [
      ep(1, 'us/x'),
      ep(2, 'ap/y'),
      ep(3, 'eu/a/1'),
    ]);
    assert.deepEqual(
      layoutCluster(cluster).endpoints.map((e) => e.port),
      [3, 2, 1],
    );
    const byDefault = layoutCluster(failoverCluster({ own }, cluster.endpoints));
    assert.deepEqual(byDefault.levelOf, [0, 1, 1], 'us and ap share the "elsewhere" level');
  });

  const endpoints =
    'endpoints = [ { address = "127.0.0.1", port = 1, locality = "eu/a/1" }, { address = "127.0.0.2", port = 1, locality = "us" } ]';
  const plainCluster = (...lines: string[]) =>
    toml('[daemon]', 'locality = "eu/a/1"', '[[clusters]]', 'name = "c"', endpoints, ...lines);
  const cluster = (...lines: string[]) => plainCluster('outlier_detection = {}', ...lines);

  test('kmesh.toml: locality_failover_regions and locality_failover_priority', () => {
    const config = parseConfig(
      cluster(
        'locality_failover_regions = [ { from = "eu", to = "us" } ]',
        'locality_failover_priority = [ "topology.kubernetes.io/region", "zone=b" ]',
      ),
      PATH,
    );
    assert.deepEqual(config.model.clusters[0]?.localityFailover, {
      own,
      regions: [{ from: 'eu', to: 'us' }],
      priority: [
        { label: 'topology.kubernetes.io/region', part: 'region' },
        { label: 'zone=b', part: 'zone', value: 'b' },
      ],
    });
  });

  const bad: Array<[string, string[]]> = [
    [
      'kmesh.toml:7: clusters[0].locality_failover_priority[0]: endpoints carry only a locality',
      ['locality_failover_priority = [ "topology.istio.io/network" ]'],
    ],
    [
      'kmesh.toml:7: clusters[0].locality_failover_priority: must be a non-empty array of label names',
      ['locality_failover_priority = []'],
    ],
    [
      'kmesh.toml:7: clusters[0].locality_failover_priority[1]: "topology.kubernetes.io/zone" ranks by zone again',
      ['locality_failover_priority = [ "zone", "topology.kubernetes.io/zone" ]'],
    ],
    [
      'kmesh.toml:7: clusters[0].locality_failover_regions[0]: fails over from "eu" to itself',
      ['locality_failover_regions = [ { from = "eu", to = "eu" } ]'],
    ],
    [
      'kmesh.toml:7: clusters[0].locality_failover_regions[0].to: must be a region name',
      ['locality_failover_regions = [ { from = "eu", to = "us/east" } ]'],
    ],
    [
      'kmesh.toml:7: clusters[0].locality_failover_regions[1].from: "eu" is listed twice',
      ['locality_failover_regions = [ { from = "eu", to = "us" }, { from = "eu", to = "ap" } ]'],
    ],
    [
      'kmesh.toml:8: clusters[0].locality_failover_regions: contradicts locality_failover = false',
      ['locality_failover = false', 'locality_failover_regions = [ { from = "eu", to = "us" } ]'],
    ],
  ];
  for (const [expected, lines] of bad) {
    test(expected, () => assertOneError(cluster(...lines), expected));
  }

  test('without outlier detection the lists are refused (nothing would ever fail over)', () => {
    const errors = errorsOf(plainCluster('locality_failover_priority = [ "region" ]'));
    assert.deepEqual(errors, [
      'kmesh.toml:6: clusters[0].locality_failover_priority: needs outlier_detection: endpoints fail over only when ejected',
    ]);
  });
});

describe('xDS: the CLA overprovisioning_factor', () => {
  const cla = (name: string, policy?: Record<string, unknown>) => {
    const t = xdsTypes().ClusterLoadAssignment;
    const obj = {
      clusterName: name,
      endpoints: [
        { lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.1', portValue: 1 } } } }] },
        {
          priority: 1,
          lbEndpoints: [{ endpoint: { address: { socketAddress: { address: '127.0.0.2', portValue: 1 } } } }],
        },
      ],
      ...(policy ? { policy } : {}),
    };
    return { name, typeUrl: TYPE.endpoint, value: t.encode(t.fromObject(obj)).finish() };
  };
  const modelOf = (policy?: Record<string, unknown>) => {
    const s = emptyState();
    const c = xdsCluster({ name: 'p' });
    s.clusters.set('p', decodeCluster(c.value, 0));
    s.assignments.set('p', decodeLoadAssignment(cla('p', policy).value, 0));
    return convert(s, new Map()).model.clusters[0];
  };

  test('read into the cluster; absent means the kernel default', () => {
    assert.equal(modelOf({ overprovisioningFactor: { value: 100 } })?.overprovisioningFactor, 100);
    assert.equal(modelOf()?.overprovisioningFactor, undefined);
    assert.equal(modelOf({})?.overprovisioningFactor, undefined);
  });

  test('0 and absurd factors are NACKed naming the load assignment', () => {
    for (const value of [0, 10_001]) {
      assert.throws(
        () => decodeLoadAssignment(cla('p', { overprovisioningFactor: { value } }).value, 0),
        (e: unknown) =>
          e instanceof XdsResourceError &&
          e.message === `load assignment p: policy.overprovisioning_factor ${value} (must be 1..10000)`,
      );
    }
  });
});
