/**
 * The little of HTTP/1.1 the /metrics endpoint needs: finding and reading a request head, and writing a
 * response head. The endpoint answers from `node:net` sockets with these instead of `node:http`, whose
 * request and response objects per scrape were the daemon's memory growth under concurrent scrapers
 * (docs/metrics.md).
 */

/** A request head the endpoint can answer. */
export interface RequestHead {
  method: string;
  /** The request target without its query. */
  path: string;
  /** The connection stays open after the response (HTTP/1.1 without `Connection: close`). */
  keepAlive: boolean;
  /** A body follows the head (`Content-Length` > 0 or `Transfer-Encoding`): never read, so the connection closes. */
  hasBody: boolean;
}

/** A request head the endpoint refuses, and how. */
export interface BadHead {
  status: 400 | 505;
  why: string;
}

/**
 * Where the head in `buf` ends (the index after its blank line), or -1 while it is incomplete. Lines end
 * with CRLF; a bare LF is accepted too, as llhttp does.
 */
export function headEnd(buf: Buffer): number {
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) {
    if (buf[i + 1] === 10) return i + 2;
    if (buf[i + 1] === 13 && buf[i + 2] === 10) return i + 3;
  }
  return -1;
}

/** tchar of RFC 9110: what a method and a header name are made of. */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
  TCHAR[c.charCodeAt(0)] = 1;

/** `s[from, to)` is a non-empty token. Scanned in place: a scrape's head is read without making substrings. */
function isToken(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) if (TCHAR[s.charCodeAt(i)] !== 1) return false;
  return true;
}

/** `s[from, to)` is non-empty and has no spaces or control characters (a request target). */
function isVisible(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  for (let i = from; i < to; i++) if (s.charCodeAt(i) <= 0x20 || s.charCodeAt(i) === 0x7f) return false;
  return true;
}

/** `s[from, to)` is `lower` in any case (`lower` is lower-case letters and '-'). */
function isName(s: string, from: number, to: number, lower: string): boolean {
  if (to - from !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if ((s.charCodeAt(from + i) | 0x20) !== lower.charCodeAt(i)) return false;
  return true;
}

/** Where the line starting at `from` ends (before its CR LF or LF), and where the next begins. */
function lineAt(s: string, from: number): { end: number; next: number } {
  const lf = s.indexOf('\n', from);
  const next = lf === -1 ? s.length : lf + 1;
  const end = lf > from && s.charCodeAt(lf - 1) === 13 ? lf - 1 : lf === -1 ? s.length : lf;
  return { end, next };
}

/** Reads a complete head (as `headEnd` found it, decoded as latin1). */
export function parseHead(head: string): RequestHead | BadHead {
  const first = lineAt(head, 0);
  const sp1 = head.indexOf(' ');
  const sp2 = sp1 === -1 ? -1 : head.indexOf(' ', sp1 + 1);
  if (sp2 === -1 || sp2 >= first.end || !isToken(head, 0, sp1)) return { status: 400, why: 'malformed request line' };
  const target = head.slice(sp1 + 1, sp2);
  const version = head.slice(sp2 + 1, first.end);
  if (!isVisible(head, sp1 + 1, sp2) || !/^HTTP\/\d\.\d$/.test(version)) {
    return { status: 400, why: 'malformed request line' };
  }
  if (version !== 'HTTP/1.1' && version !== 'HTTP/1.0') {
    return { status: 505, why: `${version} is not supported, only HTTP/1.1 and 1.0` };
  }
  let host = false;
  let close = version === 'HTTP/1.0'; // HTTP/1.0 keep-alive is not offered: the connection closes after the response
  let hasBody = false;
  for (let line = first; line.next < head.length; ) {
    const from = line.next;
    line = lineAt(head, from);
    if (line.end === from) break;
    const colon = head.indexOf(':', from);
    if (colon === -1 || colon > line.end || !isToken(head, from, colon)) {
      return { status: 400, why: 'malformed header line' };
    }
    if (isName(head, from, colon, 'host')) host = true;
    else if (isName(head, from, colon, 'connection')) {
      close ||= /(^|,)[ \t]*close[ \t]*(,|$)/i.test(head.slice(colon + 1, line.end));
    } else if (isName(head, from, colon, 'transfer-encoding')) hasBody = true;
    else if (isName(head, from, colon, 'content-length')) {
      const value = head.slice(colon + 1, line.end).trim();
      if (!/^\d+$/.test(value)) return { status: 400, why: 'malformed Content-Length' };
      hasBody ||= Number(value) > 0;
    }
  }
  if (version === 'HTTP/1.1' && !host) return { status: 400, why: 'no Host header' };
  const query = target.indexOf('?');
  return {
    method: head.slice(0, sp1),
    path: query === -1 ? target : target.slice(0, query),
    keepAlive: !close && !hasBody,
    hasBody,
  };
}

const REASONS: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
  505: 'HTTP Version Not Supported',
};

/** A response made once and sent as is to every request it answers. */
export interface Response {
  /** Status line, the response's headers and `Content-Length`; `Date` and the blank line follow when sent. */
  head: Buffer;
  body: Buffer;
}

/** A response to send; `headers` are header lines, each ending in CRLF. */
export function makeResponse(status: number, headers: string, body: Buffer): Response {
  const head = `HTTP/1.1 ${status} ${REASONS[status] ?? ''}\r\n${headers}Content-Length: ${body.length}\r\n`;
  return { head: Buffer.from(head, 'latin1'), body };
}

/** The `Date` line, made at most once a second. */
let date = { second: -1, line: Buffer.alloc(0) };
export function dateLine(): Buffer {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== date.second)
    date = { second, line: Buffer.from(`Date: ${new Date(now).toUTCString()}\r\n`, 'latin1') };
  return date.line;
}

/** What ends a response head: the blank line, after `Connection: close` unless the connection is kept alive. */
export const HEAD_END = { keepAlive: Buffer.from('\r\n'), close: Buffer.from('Connection: close\r\n\r\n') } as const;
