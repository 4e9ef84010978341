/** The 16-byte address form of every map, and the struct codec the layouts are written in. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeAddr, encodeAddr, isV4Mapped, isWildcard, writeAddr } from '../../src/model/address.js';
import { array, bytes, StructCodec, u8, u16, u32, u64 } from '../../src/runtime/maps/struct-codec.js';

const hex = (text: string) => text.replace(/\s/g, '');

describe('encodeAddr / decodeAddr', () => {
  const cases: Array<[input: string, encoded: string, decoded: string]> = [
    ['127.0.0.1', '0000 0000 0000 0000 0000 ffff 7f00 0001', '127.0.0.1'],
    ['0.0.0.0', '0000 0000 0000 0000 0000 ffff 0000 0000', '0.0.0.0'],
    ['255.255.255.255', '0000 0000 0000 0000 0000 ffff ffff ffff', '255.255.255.255'],
    ['10.1.2.3', '0000 0000 0000 0000 0000 ffff 0a01 0203', '10.1.2.3'],
    ['::1', '0000 0000 0000 0000 0000 0000 0000 0001', '::1'],
    ['::', '0000 0000 0000 0000 0000 0000 0000 0000', '::'],
    ['fd00::1:2', 'fd00 0000 0000 0000 0000 0000 0001 0002', 'fd00::1:2'],
    ['2001:db8::', '2001 0db8 0000 0000 0000 0000 0000 0000', '2001:db8::'],
    ['::ffff:127.0.0.1', '0000 0000 0000 0000 0000 ffff 7f00 0001', '127.0.0.1'],
    ['::ffff:7f00:1', '0000 0000 0000 0000 0000 ffff 7f00 0001', '127.0.0.1'],
    ['2001:0db8:0000:0000:0000:ff00:0042:8329', '2001 0db8 0000 0000 0000 ff00 0042 8329', '2001:db8::ff00:42:8329'],
    ['1:2:3:4:5:6:7:8', '0001 0002 0003 0004 0005 0006 0007 0008', '1:2:3:4:5:6:7:8'],
    ['FD00:ABCD::EF', 'fd00 abcd 0000 0000 0000 0000 0000 00ef', 'fd00:abcd::ef'],
    // a single zero group is not compressed; the first longest run is
    ['1:0:2:3:4:5:6:7', '0001 0000 0002 0003 0004 0005 0006 0007', '1:0:2:3:4:5:6:7'],
    ['1:0:0:2:0:0:3:4', '0001 0000 0000 0002 0000 0000 0003 0004', '1::2:0:0:3:4'],
    ['1:0:0:2:0:0:0:4', '0001 0000 0000 0002 0000 0000 0000 0004', '1:0:0:2::4'],
    ['1:2:3:4:5:6:1.2.3.4', '0001 0002 0003 0004 0005 0006 0102 0304', '1:2:3:4:5:6:102:304'],
  ];
  for (const [input, encoded, decoded] of cases) {
    test(`${input}`, () => {
      const buf = encodeAddr(input);
      assert.equal(buf.length, 16);
      assert.equal(buf.toString('hex'), hex(encoded));
      assert.equal(decodeAddr(buf), decoded);
      // the decoded text encodes to the same bytes
      assert.equal(encodeAddr(decoded).toString('hex'), hex(encoded));
    });
  }

  test('writeAddr fills 16 bytes at an offset, whatever was there', () => {
    const buf = Buffer.alloc(40, 0xaa);
    writeAddr(buf, 4, '10.1.2.3');
    assert.equal(buf.subarray(4, 20).toString('hex'), hex('0000 0000 0000 0000 0000 ffff 0a01 0203'));
    writeAddr(buf, 20, 'fd00::1');
    assert.equal(buf.subarray(20, 36).toString('hex'), hex('fd00 0000 0000 0000 0000 0000 0000 0001'));
    assert.equal(buf[3], 0xaa);
    assert.equal(buf[36], 0xaa);
  });

  test('not addresses: refused, dotted quads included', () => {
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1..2.3', '1.2.3.4 ', '', 'x']) {
      assert.throws(() => encodeAddr(bad), /not an IP address/, bad);
    }
  });

  test('isV4Mapped', () => {
    assert.equal(isV4Mapped(encodeAddr('127.0.0.1')), true);
    assert.equal(isV4Mapped(encodeAddr('0.0.0.0')), true);
    assert.equal(isV4Mapped(encodeAddr('::ffff:1.2.3.4')), true);
    assert.equal(isV4Mapped(encodeAddr('::1')), false);
    assert.equal(isV4Mapped(encodeAddr('::')), false);
    assert.equal(isV4Mapped(encodeAddr('::fffe:1.2.3.4')), false);
    assert.equal(isV4Mapped(encodeAddr('1::ffff:1.2.3.4')), false);
  });

  test('isWildcard', () => {
    assert.equal(isWildcard('0.0.0.0'), true);
    assert.equal(isWildcard('::'), true);
    assert.equal(isWildcard('127.0.0.1'), false);
  });

  for (const bad of [
    '',
    'example.com',
    '127.0.0.300',
    '127.0.0',
    '1.2.3.4.5',
    ':::1',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    'fd00::g',
    ' 127.0.0.1',
    '[::1]',
  ]) {
    test(`encodeAddr rejects ${JSON.stringify(bad)}`, () => {
      assert.throws(() => encodeAddr(bad), { message: `not an IP address: ${bad}` });
    });
  }

  test('encodeAddr rejects a scoped address instead of dropping the zone', () => {
    assert.throws(() => encodeAddr('fe80::1%eth0'), /fe80::1%eth0/);
  });

  test('decodeAddr of a short buffer throws', () => {
    assert.throws(() => decodeAddr(Buffer.alloc(8)), RangeError);
  });
});

describe('StructCodec', () => {
  test('natural alignment and tail padding', () => {
    const codec = new StructCodec('t', {
      a: u8,
      b: u32,
      c: u16,
      d: u64,
      e: bytes(3),
      f: array(u16, 3),
      g: u8,
    });
    assert.deepEqual(
      codec.fields.map((f) => [f.name, f.offset, f.size]),
      [
        ['a', 0, 1],
        ['b', 4, 4],
        ['c', 8, 2],
        ['d', 16, 8],
        ['e', 24, 3],
        ['f', 28, 6],
        ['g', 34, 1],
      ],
    );
    assert.equal(codec.size, 40); // 35 rounded up to the u64 alignment
  });

  test('bytes align to 1, arrays to their element', () => {
    const codec = new StructCodec('t', { a: u8, b: bytes(5), c: array(u32, 2) });
    assert.deepEqual(
      codec.fields.map((f) => f.offset),
      [0, 1, 8],
    );
    assert.equal(codec.size, 16);
    assert.equal(new StructCodec('t', { a: bytes(3) }).size, 3);
    assert.equal(new StructCodec('t', { a: u16, b: u8 }).size, 4);
  });

  test('alignment override (a member with alignment of its own)', () => {
    const codec = new StructCodec('t', { a: u8, b: bytes(4) }, { b: 4 });
    assert.equal(codec.fields[1]?.offset, 4);
    assert.equal(codec.size, 8);
  });

  test('encode/decode round trip, little-endian, unset fields zero', () => {
    const codec = new StructCodec('t', {
      a: u8,
      b: u16,
      c: u32,
      d: u64,
      e: bytes(4),
      f: array(u32, 3),
    });
    const value = {
      a: 0xfe,
      b: 0x1234,
      c: 0xdeadbeef,
      d: 0x0102030405060708n,
      e: Buffer.from([1, 2, 3, 4]),
      f: [1, 0xffffffff, 3],
    };
    // u64 is declared as a ScalarType of any size, so Decoded<> types it as number though it is a bigint
    const buf = codec.encode(value as never);
    assert.equal(buf.length, codec.size);
    assert.equal(buf.toString('hex'), hex('fe 00 3412 efbeadde 0807060504030201 01020304 01000000 ffffffff 03000000'));
    assert.deepEqual(codec.decode(buf), value);

    const partial = codec.decode(codec.encode({ c: 7, f: [9] }));
    assert.deepEqual(partial, { a: 0, b: 0, c: 7, d: 0n, e: Buffer.alloc(4), f: [9, 0, 0] });
    // a shorter bytes value is zero-filled at the end
    assert.deepEqual(codec.decode(codec.encode({ e: Buffer.from([9]) })).e, Buffer.from([9, 0, 0, 0]));
  });

  test('decode of a longer buffer reads the prefix; a shorter one throws', () => {
    const codec = new StructCodec('kmesh_x', { a: u32 });
    assert.deepEqual(codec.decode(Buffer.from([1, 0, 0, 0, 9, 9])), { a: 1 });
    assert.throws(() => codec.decode(Buffer.alloc(3)), { message: 'kmesh_x: 3 bytes, need 4' });
  });

  test('oversize bytes and arrays are errors, not truncation', () => {
    const codec = new StructCodec('t', { e: bytes(4), f: array(u16, 2) });
    assert.throws(() => codec.encode({ e: Buffer.alloc(5) }), { message: 'e: 5 bytes do not fit in 4' });
    assert.throws(() => codec.encode({ f: [1, 2, 3] }), { message: 'f: 3 items do not fit in 2' });
  });

  test('out-of-range scalars are errors', () => {
    const codec = new StructCodec('t', { a: u8, b: u16, c: u32 });
    assert.throws(() => codec.encode({ a: 256 }), RangeError);
    assert.throws(() => codec.encode({ b: 65536 }), RangeError);
    assert.throws(() => codec.encode({ c: -1 }), RangeError);
  });
});
