/**
 * The SotW resource cache: a resend decodes only the resources whose bytes changed, whatever their order; a
 * resend that is not committed (NACKed) leaves the cache as it was; a bad resource still fails the response.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DECODERS, decodeResponse } from '../../src/api/xds/decode.js';
import { xdsTypes } from '../../src/api/xds/protos.js';
import { ResourceCache } from '../../src/api/xds/resource-cache.js';
import type { XLoadAssignment } from '../../src/api/xds/resources.js';
import { Slicer } from '../../src/runtime/slicer.js';
import { loadAssignment, type Res, TYPE } from '../fixtures/xds-server.js';

const name = (i: number) => `outbound|80||s${i}.default.svc.cluster.local`;
const cla = (i: number, port = 8000) => loadAssignment(name(i), [{ address: `127.44.0.${i + 1}`, port }]);

function response(resources: Res[]) {
  const t = xdsTypes();
  const msg = t.DiscoveryResponse.fromObject({ versionInfo: '1', typeUrl: TYPE.endpoint, nonce: '1', resources });
  return decodeResponse(t.DiscoveryResponse.encode(msg).finish());
}

/** A cache whose decoder counts the resources it decodes. */
function counting() {
  const cache = new ResourceCache<XLoadAssignment>();
  const decoded: string[] = [];
  const one = (bytes: Uint8Array, i: number) => {
    const r = DECODERS[TYPE.endpoint](bytes, i);
    decoded.push(r.name);
    return r;
  };
  const push = async (resources: Res[], commit = true) => {
    decoded.length = 0;
    const out = await cache.decode(response(resources), one, new Slicer());
    if (commit) cache.commit(out.staged, true);
    return { ...out, decoded: [...decoded] };
  };
  return push;
}

describe('xds resource cache', () => {
  it('a resend of 100 assignments with one changed decodes that one; the others keep their objects', async () => {
    const push = counting();
    const clas = Array.from({ length: 100 }, (_, i) => cla(i));
    const first = await push(clas);
    assert.equal(first.decoded.length, 100);
    clas[42] = cla(42, 9000);
    const second = await push(clas);
    assert.deepEqual(second.decoded, [name(42)]);
    assert.equal(second.resources.get(name(42))?.endpoints[0]?.port, 9000);
    assert.equal(second.resources.get(name(7)), first.resources.get(name(7)), 'unchanged: same decoded object');
  });

  it('a reordered resend decodes nothing (found by name); a new one is decoded', async () => {
    const push = counting();
    const clas = Array.from({ length: 20 }, (_, i) => cla(i));
    await push(clas);
    const again = await push([cla(20), ...clas.reverse()]);
    assert.deepEqual(again.decoded, [name(20)]);
    assert.equal(again.resources.size, 21);
  });

  it('what a refused response decoded is not kept: the same resend decodes its change again', async () => {
    const push = counting();
    const clas = Array.from({ length: 10 }, (_, i) => cla(i));
    await push(clas);
    clas[3] = cla(3, 9003);
    assert.deepEqual((await push(clas, false)).decoded, [name(3)]);
    assert.deepEqual((await push(clas)).decoded, [name(3)]);
    assert.deepEqual((await push(clas)).decoded, []);
  });

  it('a changed resource that is invalid fails the whole response, also among unchanged ones', async () => {
    const push = counting();
    const clas = Array.from({ length: 10 }, (_, i) => cla(i));
    await push(clas);
    clas[5] = cla(5, 70000);
    await assert.rejects(push(clas), /port 70000/);
  });
});
