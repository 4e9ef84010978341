/**
 * Typed access to one TOML table that records every problem (with its location)
 * instead of stopping at the first, and flags keys nobody asked for.
 */
import { isIP } from 'node:net';
import { outOfRange } from '../../model/validate.js';

export type Where = (key?: string) => string;

export class TableReader {
  private readonly used = new Set<string>();

  constructor(
    private readonly table: Record<string, unknown>,
    readonly where: Where,
    private readonly errors: string[],
  ) {}

  fail(key: string | undefined, message: string): void {
    this.errors.push(`${this.where(key)}: ${message}`);
  }

  has(key: string): boolean {
    return this.table[key] !== undefined;
  }

  raw(key: string): unknown {
    this.used.add(key);
    return this.table[key];
  }

  string(key: string, fallback?: string): string | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is required');
      return fallback;
    }
    if (typeof v !== 'string' || v === '') {
      this.fail(key, `must be a non-empty string, got ${show(v)}`);
      return fallback;
    }
    return v;
  }

  optionalString(key: string): string | undefined {
    return this.has(key) ? this.string(key) : (this.raw(key) as undefined);
  }

  boolean(key: string, fallback: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined) return fallback;
    if (typeof v !== 'boolean') {
      this.fail(key, `must be true or false, got ${show(v)}`);
      return fallback;
    }
    return v;
  }

  integer(key: string, min: number, max: number, fallback?: number): number | undefined {
    return this.readInteger(key, { min, max }, { min, max }, fallback);
  }

  /**
   * Any integer; the range is the model's to check (so that one message serves TOML and xDS), and
   * is only stated here when the value is not an integer at all.
   */
  modelInteger(key: string, range: { min: number; max: number }, fallback?: number): number | undefined {
    return this.readInteger(key, { min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }, range, fallback);
  }

  private readInteger(
    key: string,
    accepted: { min: number; max: number },
    stated: { min: number; max: number },
    fallback?: number,
  ): number | undefined {
    const v = this.raw(key);
    if (v === undefined) {
      if (fallback === undefined) this.fail(key, 'is required');
      return fallback;
    }
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < accepted.min || n > accepted.max) {
      const quoted =
        typeof v === 'string' && /^\s*-?\d+\s*$/.test(v) ? ' (a string: write the number without quotes)' : '';
      this.fail(key, `${outOfRange(stated, show(v))}${quoted}`);
      return fallback;
    }
    return n;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T | undefined {
    const v = this.string(key, fallback);
    if (v !== undefined && !allowed.includes(v as T)) {
      this.fail(key, `must be one of ${allowed.join(', ')}, got ${show(v)}`);
      return fallback;
    }
    return v as T | undefined;
  }

  ipAddress(key: string): string | undefined {
    const v = this.string(key);
    if (v !== undefined && isIP(v) === 0) {
      this.fail(key, `must be an IPv4 or IPv6 address literal, got ${show(v)}`);
      return undefined;
    }
    return v;
  }

  /** An inline table read by `reader`, or undefined when the key is absent. */
  subTable<T>(key: string, read: (reader: TableReader) => T): T | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Date) {
      this.fail(key, `must be a table, got ${show(v)}`);
      return undefined;
    }
    const reader = new TableReader(
      v as Record<string, unknown>,
      (k) => this.where(k ? `${key}.${k}` : key),
      this.errors,
    );
    const out = read(reader);
    reader.rejectUnknown();
    return out;
  }

  /** An array of tables, each read by `each`; `itemWhere` locates items written as [[a.b]] blocks. */
  tables<T>(
    key: string,
    each: (item: TableReader, index: number) => T | undefined,
    itemWhere?: (index: number) => Where,
  ): T[] | undefined {
    const v = this.raw(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || v.some((item) => typeof item !== 'object' || item === null || Array.isArray(item))) {
      this.fail(key, 'must be an array of tables');
      return undefined;
    }
    return v.flatMap((item, index) => {
      const reader = new TableReader(
        item as Record<string, unknown>,
        itemWhere?.(index) ?? ((k) => `${this.where(key)}[${index}]${k ? `.${k}` : ''}`),
        this.errors,
      );
      const out = each(reader, index);
      reader.rejectUnknown();
      return out === undefined ? [] : [out];
    });
  }

  /** Call after reading: any key not asked for is a mistake the operator wants to hear about. */
  rejectUnknown(): void {
    for (const key of Object.keys(this.table)) {
      if (!this.used.has(key)) this.fail(key, 'unknown key');
    }
  }
}

export function show(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Date) return v.toISOString();
  return JSON.stringify(v) ?? String(v);
}
