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
    const start = table === null ? 0 : this.headerLine(table, index);
    if (start < 0) return 1;
    if (key) {
      // "endpoints[2].port" stands on the line of "endpoints".
      const first = key.split(/[.[]/)[0] ?? key;
      const keyPattern = new RegExp(`^\\s*["']?${escapeRegExp(first)}["']?\\s*=`);
      for (let i = table === null ? 0 : start + 1; i < this.lines.length; i++) {
        const line = this.lines[i] ?? '';
        if (/^\s*\[/.test(line)) break;
        if (keyPattern.test(line)) return i + 1;
      }
    }
    return start + 1;
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
