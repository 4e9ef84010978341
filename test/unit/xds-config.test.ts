/** The [xds] TOML table: defaults, validation messages with the caller's location prefix, Node identity. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { Backoff } from '../../src/api/xds/backoff.js';
import { buildNode, parseXdsConfig } from '../../src/api/xds/config.js';
import { KmeshError } from '../../src/contracts/errors.js';

const where = (k: string) => `kmesh.toml:12: xds.${k}`;
const tmp = mkdtempSync(join(tmpdir(), 'kmesh-xdscfg-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

function fails(table: Record<string, unknown>, re: RegExp): void {
  assert.throws(
    () => parseXdsConfig(table, where),
    (e: Error) => e instanceof KmeshError && e.code === 'InvalidConfig' && re.test(e.message),
  );
}

describe('xds config', () => {
  it('defaults: plaintext, Istio-style node id, backoff 500 ms..30 s', () => {
    const c = parseXdsConfig({ address: 'istiod.istio-system.svc:15010' }, where);
    assert.equal(c.tls, false);
    assert.match(c.nodeId, /^sidecar~[\d.]+~[^~]+\.default~default\.svc\.cluster\.local$/);
    assert.equal(c.namespace, 'default');
    assert.equal(c.initialBackoffMs, 500);
    assert.equal(c.maxBackoffMs, 30000);
    assert.equal(c.mode, 'sotw');
    assert.equal(parseXdsConfig({ address: 'a:1', mode: 'delta' }, where).mode, 'delta');
  });

  it('full table, TLS implied by ca_file', () => {
    const ca = join(tmp, 'ca.pem');
    const tok = join(tmp, 'token');
    writeFileSync(ca, 'x');
    writeFileSync(tok, 'y');
    const c = parseXdsConfig(
      {
        address: '[::1]:15012',
        node_id: 'sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local',
        cluster: 'vm1.shop',
        namespace: 'shop',
        labels: { app: 'orders', version: 'v2' },
        metadata: { ISTIO_VERSION: '1.22.0', CLUSTER_ID: 'Kubernetes', nested: { a: [1, true] } },
        ca_file: ca,
        token_file: tok,
        initial_backoff_ms: 100,
        max_backoff_ms: 1000,
      },
      where,
    );
    assert.equal(c.tls, true);
    assert.deepEqual(c.labels, { app: 'orders', version: 'v2' });
    const node = buildNode(c, '1.2.3') as {
      id: string;
      cluster: string;
      metadata: { fields: Record<string, unknown> };
    };
    assert.equal(node.id, 'sidecar~10.0.0.5~vm1.shop~shop.svc.cluster.local');
    assert.equal(node.cluster, 'vm1.shop');
    assert.deepEqual(node.metadata.fields.NAMESPACE, { stringValue: 'shop' });
    assert.deepEqual(node.metadata.fields.LABELS, {
      structValue: { fields: { app: { stringValue: 'orders' }, version: { stringValue: 'v2' } } },
    });
    assert.deepEqual(node.metadata.fields.nested, {
      structValue: { fields: { a: { listValue: { values: [{ numberValue: 1 }, { boolValue: true }] } } } },
    });
  });

  it('clear errors with the location prefix', () => {
    fails({}, /^kmesh\.toml:12: xds\.address: is required/);
    fails({ address: 'istiod' }, /xds\.address: must be host:port/);
    fails({ address: 'istiod:99999' }, /xds\.address: port 99999 out of range/);
    fails({ address: 'a:1', bogus: 1 }, /xds\.bogus: unknown key/);
    fails({ address: 'a:1', labels: { app: 3 } }, /xds\.labels: label "app" must be a string/);
    fails({ address: 'a:1', labels: 'x' }, /xds\.labels: must be a table/);
    fails({ address: 'a:1', tls: 'yes' }, /xds\.tls: must be true or false/);
    fails({ address: 'a:1', cert_file: '/x' }, /xds\.key_file: cert_file and key_file must be given together/);
    fails(
      { address: 'a:1', ca_file: '/nonexistent/ca.pem' },
      /xds\.ca_file: cannot read \/nonexistent\/ca\.pem: ENOENT/,
    );
    fails({ address: 'a:1', initial_backoff_ms: 1.5 }, /xds\.initial_backoff_ms: must be an integer/);
    fails(
      { address: 'a:1', initial_backoff_ms: 5000, max_backoff_ms: 1000 },
      /xds\.max_backoff_ms: must be >= initial_backoff_ms/,
    );
    fails({ address: 'a:1', node_id: '' }, /xds\.node_id: must be a non-empty string/);
    fails({ address: 'a:1', mode: 'incremental' }, /^kmesh\.toml:12: xds\.mode: must be one of: sotw, delta$/);
  });

  it('backoff: exponential, capped, jittered into [step/2, step]', () => {
    const lo = new Backoff(100, 1000, () => 0);
    assert.deepEqual([lo.next(), lo.next(), lo.next(), lo.next(), lo.next(), lo.next()], [50, 100, 200, 400, 500, 500]);
    const hi = new Backoff(100, 1000, () => 1);
    assert.deepEqual([hi.next(), hi.next(), hi.next()], [100, 200, 400]);
    hi.reset();
    assert.equal(hi.next(), 100);
  });
});
