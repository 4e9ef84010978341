/**
 * Finds the line a TOML key stands on, so that a validation error can say
 * "kmesh.toml:14: listeners[1].port". The parser gives values, not positions; this
 * scans headers and key lines, which is exact for the block style our docs use and
 * falls back to the table header for anything more exotic.
 */
export class KeyLocator {
  private readonly lines: string[];

  constructor(
    readonly file: string,
    source: string,
  ) {
    this.lines = source.split('\n');
  }

  /** `table` is a top-level table or array-of-tables name; `index` selects the n-th [[table]]. */
  where(table: string | null, index: number | null, key?: string): string {
    const path = [table === null ? '' : index === null ? table : `${table}[${index}]`, key]
      .filter((part) => part)
      .join('.');
    return `${this.file}:${this.lineOf(table, index, key)}: ${path}`;
  }

  private lineOf(table: string | null, index: number | null, key?: string): number {
    if (table === null) return this.topLevelLine(key);
    const start = this.headerLine(table, index);
    if (start < 0) return 1;
    if (key) {
      // "endpoints[2].port" stands on the line of "endpoints".
      const line = this.keyLineAfter(start + 1, key.split(/[.[]/)[0] ?? key);
      if (line > 0) return line;
    }
    return start + 1;
  }

  /** A root key stands before the first header; a section name is found by its header. */
  private topLevelLine(key?: string): number {
    if (!key) return 1;
    const line = this.keyLineAfter(0, key);
    if (line > 0) return line;
    const single = this.headerLine(key, null);
    if (single >= 0) return single + 1;
    const array = this.headerLine(key, 0);
    return array >= 0 ? array + 1 : 1;
  }

  /** 1-based line of `key =` from `from` up to the next header, or 0. */
  private keyLineAfter(from: number, key: string): number {
    const keyPattern = new RegExp(`^\\s*["']?${escapeRegExp(key)}["']?\\s*=`);
    for (let i = from; i < this.lines.length; i++) {
      const line = this.lines[i] ?? '';
      if (/^\s*\[/.test(line)) break;
      if (keyPattern.test(line)) return i + 1;
    }
    return 0;
  }

  private headerLine(table: string, index: number | null): number {
    const header =
      index === null
        ? new RegExp(`^\\s*\\[\\s*${escapeRegExp(table)}\\s*\\]`)
        : new RegExp(`^\\s*\\[\\[\\s*${escapeRegExp(table)}\\s*\\]\\]`);
    let seen = 0;
    for (let i = 0; i < this.lines.length; i++) {
      if (!header.test(this.lines[i] ?? '')) continue;
      if (index === null || seen === index) return i;
      seen++;
    }
    return -1;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
