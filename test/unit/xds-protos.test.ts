/** The hand-written protos: wire compatibility with known encodings, unknown fields tolerated, bad bytes rejected. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  anyAt,
  decodeCluster,
  decodeListener,
  decodeLoadAssignment,
  decodeResponse,
} from '../../src/api/xds/decode.js';
import { TYPE, xdsTypes } from '../../src/api/xds/protos.js';
import { XdsResourceError } from '../../src/api/xds/resources.js';
import { cluster, tcpListener } from '../fixtures/xds-server.js';

/** Minimal protobuf writer, independent of protobufjs, to hand-craft wire bytes. */
function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const str = (field: number, s: string) => {
  const b = [...Buffer.from(s)];
  return [...tag(field, 2), ...varint(b.length), ...b];
};
const msg = (field: number, body: number[]) => [...tag(field, 2), ...varint(body.length), ...body];
const num = (field: number, n: number) => [...tag(field, 0), ...varint(n)];

describe('xds protos', () => {
  it('decodes a hand-encoded ClusterLoadAssignment (field numbers as in xDS v3)', () => {
    // endpoints(2) { locality(1){region(1)} lb_endpoints(2){ endpoint(1){ address(1){ socket_address(1){ address(2) port_value(3) } } } health_status(2)=HEALTHY load_balancing_weight(4){value(1)} } priority(5) }
    const sa = [...str(2, '127.0.0.9'), ...num(3, 8080)];
    const lbe = [...msg(1, msg(1, msg(1, sa))), ...num(2, 1), ...msg(4, num(1, 7))];
    const loc = [...msg(1, str(1, 'eu')), ...msg(2, lbe), ...num(5, 2)];
    const bytes = new Uint8Array([...str(1, 'c1'), ...msg(2, loc)]);
    const cla = decodeLoadAssignment(bytes, 0);
    assert.deepEqual(cla, {
      name: 'c1',
      endpoints: [{ address: '127.0.0.9', port: 8080, weight: 7, locality: { region: 'eu' }, priority: 2 }],
    });
  });

  it('decodes a hand-encoded Cluster: type EDS(2=3), lb_policy MAGLEV(6=5), eds service_name(3.2)', () => {
    const bytes = new Uint8Array([...str(1, 'c'), ...num(2, 3), ...msg(3, str(2, 'svc-eds')), ...num(6, 5)]);
    const c = decodeCluster(bytes, 0);
    assert.equal(c.kind, 'eds');
    assert.equal(c.edsName, 'svc-eds');
    assert.equal(c.lbPolicy, 'maglev');
  });

  it('tolerates unknown fields at every level (newer control planes)', () => {
    const base = [...cluster({ name: 'x', lbPolicy: 'random' }).value];
    // field 999 (varint), field 1000 (length-delimited), field 1001 (fixed64), field 1002 (fixed32)
    const extra = [
      ...num(999, 42),
      ...str(1000, 'future'),
      ...tag(1001, 1),
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8,
      ...tag(1002, 5),
      1,
      2,
      3,
      4,
    ];
    const c = decodeCluster(new Uint8Array([...base, ...extra]), 0);
    assert.equal(c.name, 'x');
    assert.equal(c.lbPolicy, 'random');
    const l = tcpListener('127.10.0.1', 80, 'x');
    const d = decodeListener(new Uint8Array([...l.value, ...extra]), 0);
    assert.equal(d.entries[0]?.addresses[0], '127.10.0.1');
  });

  it('rejects truncated and garbage bytes with XdsResourceError', () => {
    const good = cluster({ name: 'abc' }).value;
    assert.throws(() => decodeCluster(good.subarray(0, good.length - 3), 0), XdsResourceError);
    assert.throws(
      () => decodeCluster(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), 0),
      XdsResourceError,
    );
    assert.throws(() => decodeListener(new Uint8Array([0x0a, 0x50, 0x41]), 0), /malformed Listener/);
  });

  it('strings: UTF-8 read in place, a length past the end is an error also when the bytes are a Buffer', () => {
    const name = 'svc-ü-名前.default';
    const good = cluster({ name }).value;
    assert.equal(decodeCluster(good, 0).name, name);
    assert.equal(decodeCluster(Buffer.from(good), 0).name, name);
    // the name's length says 40 bytes, 3 follow: the Buffer reader would return a 3-character name
    const cut = Buffer.from([...tag(1, 2), 40, 0x61, 0x62, 0x63]);
    assert.throws(() => decodeCluster(cut, 0), /malformed Cluster: index out of range: 2 \+ 40 > 5/);
    assert.throws(() => decodeResponse(Buffer.from([...tag(4, 2), 40, 0x61])), /index out of range/);
  });

  it('a malformed DiscoveryResponse envelope throws; a response carries type URL, version, nonce', () => {
    assert.throws(() => decodeResponse(new Uint8Array([0x12, 0x40, 0x00])));
    const t = xdsTypes();
    const bytes = t.DiscoveryResponse.encode(
      t.DiscoveryResponse.fromObject({ versionInfo: '7', typeUrl: TYPE.cluster, nonce: 'n1', resources: [] }),
    ).finish();
    const { resources, ...envelope } = decodeResponse(bytes);
    assert.deepEqual(envelope, { versionInfo: '7', typeUrl: TYPE.cluster, nonce: 'n1' });
    assert.deepEqual([resources.typeUrls, resources.bounds], [[], []]);
  });

  it('the resources of a response are places in its bytes: type URL and value of each, an Any without value empty', () => {
    const t = xdsTypes();
    const a = cluster({ name: 'a' });
    const b = tcpListener('127.62.0.1', 80, 'a');
    const resources = [a, { typeUrl: TYPE.cluster, value: new Uint8Array() }, b];
    const bytes = t.DiscoveryResponse.encode(
      t.DiscoveryResponse.fromObject({ versionInfo: '1', typeUrl: TYPE.cluster, nonce: '1', resources }),
    ).finish();
    const list = decodeResponse(bytes).resources;
    assert.deepEqual(list.typeUrls, [TYPE.cluster, TYPE.cluster, TYPE.listener]);
    assert.deepEqual(
      [0, 1, 2].map((i) => Buffer.from(anyAt(list, i).value).toString('hex')),
      [Buffer.from(a.value).toString('hex'), '', Buffer.from(b.value).toString('hex')],
    );
  });

  it('DiscoveryRequest NACK encodes error_detail (field 6) with google.rpc.Status code/message', () => {
    const t = xdsTypes();
    const bytes = t.DiscoveryRequest.encode(
      t.DiscoveryRequest.fromObject({
        typeUrl: TYPE.cluster,
        versionInfo: '1',
        responseNonce: '2',
        errorDetail: { code: 3, message: 'bad' },
      }),
    ).finish();
    const expect = [
      ...str(1, '1'),
      ...str(4, TYPE.cluster),
      ...str(5, '2'),
      ...msg(6, [...num(1, 3), ...str(2, 'bad')]),
    ];
    assert.deepEqual([...bytes], expect);
  });
});
