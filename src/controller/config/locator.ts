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

  /**
   * A key inside nested arrays of tables: [["listeners", 1], ["routes", 2]] is the third `[[listeners.routes]]`
   * after the second `[[listeners]]`. Tables written inline (`routes = [ {...} ]`) stand on their key's line.
   */
  whereNested(path: Array<[name: string, index: number]>, key?: string): string {
    const shown = [...path.map(([name, index]) => `${name}[${index}]`), ...(key ? [key] : [])].join('.');
    return `${this.file}:${this.nestedLine(path, key)}: ${shown}`;
  }

  private nestedLine(path: Array<[string, number]>, key?: string): number {
    let table = '';
    let header = -1;
    let end = this.lines.length;
    for (const [name, index] of path) {
      table = table ? `${table}.${name}` : name;
      const start = this.nthHeader(table, index, header + 1, end);
      if (start < 0) return Math.max(this.keyLineAfter(header + 1, name), header + 1, 1);
      header = start;
      end = this.tableEnd(table, start + 1, end);
    }
    const line = key ? this.keyLine(table, header, end, key) : 0;
    return line > 0 ? line : header + 1;
  }

  /** 1-based line of `key =` in the table whose header is at `header`, or of its first `[[table.key]]`, or 0. */
  private keyLine(table: string, header: number, end: number, key: string): number {
    const head = key.split(/[.[]/)[0] ?? key;
    const line = this.keyLineAfter(header + 1, head);
    if (line > 0) return line;
    return this.nthHeader(`${table}.${head}`, 0, header + 1, end) + 1;
  }

  /** Line index of the index-th `[[table]]` in [from, to), or -1. */
  private nthHeader(table: string, index: number, from: number, to: number): number {
    let seen = 0;
    for (let i = from; i < to; i++) {
      if (headerName(this.lines[i] ?? '') !== `[[${table}]]`) continue;
      if (seen === index) return i;
      seen++;
    }
    return -1;
  }

  /** Where the table whose header precedes `from` ends: the next header that is not one of its sub-tables. */
  private tableEnd(table: string, from: number, to: number): number {
    for (let i = from; i < to; i++) {
      const name = headerName(this.lines[i] ?? '');
      if (name !== undefined && !name.replace(/^\[+/, '').startsWith(`${table}.`)) return i;
    }
    return to;
  }

  private lineOf(table: string | null, index: number | null, key?: string): number {
    if (table === null) return this.topLevelLine(key);
    const start = this.headerLine(table, index);
    if (start < 0) return 1;
    if (key) {
      // "endpoints[2].port" stands on the line of "endpoints".
      const line = this.keyLine(table, start, this.tableEnd(table, start + 1, this.lines.length), key);
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

/** `[[a.b]]` / `[a]` as written without spaces, or undefined for a line that is not a header. */
function headerName(line: string): string | undefined {
  const m = /^\s*(\[\[?)\s*([^\]]*?)\s*(\]\]?)/.exec(line);
  return m ? `${m[1]}${(m[2] ?? '').replace(/\s*\.\s*/g, '.')}${m[3]}` : undefined;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
