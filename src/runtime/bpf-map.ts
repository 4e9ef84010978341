import { closeSync } from 'node:fs';
import { check } from './errors.js';
import { libbpf } from './libbpf.js';

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
const ENOENT = 2;

/** A BPF map by fd: raw key/value buffers; the codecs in maps/ give them meaning. */
export class BpfMap {
  constructor(
    readonly name: string,
    readonly fd: number,
    readonly keySize: number,
    readonly valueSize: number,
    readonly maxEntries: number,
    private readonly ownsFd = false,
  ) {}

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    check(`update ${this.name}`, libbpf.mapUpdateElem(this.fd, key, value, flags));
  }

  lookup(key: Buffer): Buffer | null {
    const value = Buffer.alloc(this.valueSize);
    const rc = libbpf.mapLookupElem(this.fd, key, value);
    if (rc === -ENOENT) return null;
    check(`lookup ${this.name}`, rc);
    return value;
  }

  /** Returns false when the key was not there. */
  delete(key: Buffer): boolean {
    const rc = libbpf.mapDeleteElem(this.fd, key);
    if (rc === -ENOENT) return false;
    check(`delete ${this.name}`, rc);
    return true;
  }

  *keys(): Generator<Buffer> {
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const rc = libbpf.mapGetNextKey(this.fd, prev, next);
      if (rc === -ENOENT) return;
      check(`iterate ${this.name}`, rc);
      yield next;
      prev = next;
    }
  }

  /** Every entry; entries deleted during the walk are skipped. */
  entries(): Array<[Buffer, Buffer]> {
    const out: Array<[Buffer, Buffer]> = [];
    for (const key of this.keys()) {
      const value = this.lookup(key);
      if (value) out.push([key, value]);
    }
    return out;
  }

  close(): void {
    if (this.ownsFd) closeSync(this.fd);
  }
}
