/**
 * A tiny declarative codec for C structs shared with the kernel. Offsets follow C's
 * natural alignment, so a layout here reads like the struct in bpf/kmesh_maps.h, and
 * test/unit/layouts-btf.test.ts holds the two together through the object's BTF.
 * Integers are little-endian: bpfel on the x86_64/aarch64 hosts we ship for.
 */

interface ScalarType<S extends 1 | 2 | 4 | 8 = 1 | 2 | 4 | 8> {
  kind: 'scalar';
  size: S;
}
interface BytesType {
  kind: 'bytes';
  size: number;
}
interface ArrayType {
  kind: 'array';
  element: ScalarType;
  length: number;
  size: number;
}
export type FieldType = ScalarType | BytesType | ArrayType;

export const u8: ScalarType<1> = { kind: 'scalar', size: 1 };
export const u16: ScalarType<2> = { kind: 'scalar', size: 2 };
export const u32: ScalarType<4> = { kind: 'scalar', size: 4 };
export const u64: ScalarType<8> = { kind: 'scalar', size: 8 };
export const bytes = (size: number): BytesType => ({ kind: 'bytes', size });
export const array = (element: ScalarType, length: number): ArrayType => ({
  kind: 'array',
  element,
  length,
  size: element.size * length,
});

type FieldValue<T extends FieldType> = T extends ScalarType
  ? T['size'] extends 8
    ? bigint
    : number
  : T extends BytesType
    ? Buffer
    : number[];

export type Decoded<F extends Record<string, FieldType>> = { [K in keyof F]: FieldValue<F[K]> };

export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
  type: FieldType;
}

function alignOf(type: FieldType): number {
  if (type.kind === 'scalar') return type.size;
  if (type.kind === 'array') return type.element.size;
  return 1;
}

export class StructCodec<F extends Record<string, FieldType>> {
  readonly fields: FieldLayout[];
  readonly size: number;

  constructor(
    readonly cName: string,
    definition: F,
    /** For members whose C type carries alignment of its own (struct bpf_spin_lock). */
    alignOverrides: Partial<Record<keyof F, number>> = {},
  ) {
    let offset = 0;
    let maxAlign = 1;
    this.fields = Object.entries(definition).map(([name, type]) => {
      const align = alignOverrides[name as keyof F] ?? alignOf(type);
      maxAlign = Math.max(maxAlign, align);
      offset = Math.ceil(offset / align) * align;
      const field = { name, offset, size: type.size, type };
      offset += type.size;
      return field;
    });
    this.size = Math.ceil(offset / maxAlign) * maxAlign;
  }

  encode(value: Partial<Decoded<F>>): Buffer {
    const buf = Buffer.alloc(this.size);
    for (const field of this.fields) {
      const v = (value as Record<string, unknown>)[field.name];
      if (v === undefined) continue;
      writeField(buf, field, v);
    }
    return buf;
  }

  /** A member's offset, for hot paths that read single fields in place instead of decoding. */
  offsetOf(name: keyof F & string): number {
    const field = this.fields.find((f) => f.name === name);
    if (!field) throw new Error(`${this.cName} has no ${name}`);
    return field.offset;
  }

  decode(buf: Buffer): Decoded<F> {
    if (buf.length < this.size) throw new Error(`${this.cName}: ${buf.length} bytes, need ${this.size}`);
    const out: Record<string, unknown> = {};
    for (const field of this.fields) out[field.name] = readField(buf, field);
    return out as Decoded<F>;
  }
}

function writeScalar(buf: Buffer, offset: number, size: number, v: number | bigint): void {
  if (size === 1) buf.writeUInt8(Number(v), offset);
  else if (size === 2) buf.writeUInt16LE(Number(v), offset);
  else if (size === 4) buf.writeUInt32LE(Number(v), offset);
  else buf.writeBigUInt64LE(BigInt(v), offset);
}

function readScalar(buf: Buffer, offset: number, size: number): number | bigint {
  if (size === 1) return buf.readUInt8(offset);
  if (size === 2) return buf.readUInt16LE(offset);
  if (size === 4) return buf.readUInt32LE(offset);
  return buf.readBigUInt64LE(offset);
}

function writeField(buf: Buffer, field: FieldLayout, v: unknown): void {
  const { type } = field;
  if (type.kind === 'scalar') {
    writeScalar(buf, field.offset, type.size, v as number | bigint);
  } else if (type.kind === 'bytes') {
    const src = v as Buffer;
    if (src.length > type.size) throw new Error(`${field.name}: ${src.length} bytes do not fit in ${type.size}`);
    src.copy(buf, field.offset);
  } else {
    const items = v as number[];
    if (items.length > type.length)
      throw new Error(`${field.name}: ${items.length} items do not fit in ${type.length}`);
    for (const [i, item] of items.entries())
      writeScalar(buf, field.offset + i * type.element.size, type.element.size, item);
  }
}

function readField(buf: Buffer, field: FieldLayout): unknown {
  const { type } = field;
  if (type.kind === 'scalar') return readScalar(buf, field.offset, type.size);
  if (type.kind === 'bytes') return Buffer.from(buf.subarray(field.offset, field.offset + type.size));
  return Array.from({ length: type.length }, (_, i) =>
    readScalar(buf, field.offset + i * type.element.size, type.element.size),
  );
}
