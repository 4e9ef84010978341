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

const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d)\.(\d)$/;
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;

/** Reads a complete head (as `headEnd` found it, decoded as latin1). */
export function parseHead(head: string): RequestHead | BadHead {
  const lines = head.split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line));
  const request = REQUEST_LINE.exec(lines[0] ?? '');
  if (!request) return { status: 400, why: 'malformed request line' };
  const [, method = '', target = '', major, minor] = request;
  if (major !== '1' || (minor !== '0' && minor !== '1')) {
    return { status: 505, why: `HTTP/${major}.${minor} is not supported, only HTTP/1.1 and 1.0` };
  }
  let host = false;
  let close = minor === '0'; // HTTP/1.0 keep-alive is not offered: the connection closes after the response
  let hasBody = false;
  for (const line of lines.slice(1)) {
    if (line === '') break;
    const header = HEADER.exec(line);
    if (!header) return { status: 400, why: 'malformed header line' };
    const name = (header[1] as string).toLowerCase();
    const value = header[2] as string;
    if (name === 'host') host = true;
    else if (name === 'connection') close ||= /(^|,)\s*close\s*(,|$)/i.test(value);
    else if (name === 'transfer-encoding') hasBody = true;
    else if (name === 'content-length') {
      if (!/^\d+$/.test(value)) return { status: 400, why: 'malformed Content-Length' };
      hasBody ||= Number(value) > 0;
    }
  }
  if (minor === '1' && !host) return { status: 400, why: 'no Host header' };
  return { method, path: target.split('?')[0] as string, keepAlive: !close && !hasBody, hasBody };
}

const REASONS: Record<number, string> = {
  200: 'OK',
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  505: 'HTTP Version Not Supported',
};

/** The date as HTTP wants it, made at most once a second. */
let date = { second: -1, text: '' };
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== date.second) date = { second, text: new Date(now).toUTCString() };
  return date.text;
}

/** A response head: status line, `Date`, the given headers, `Content-Length`, `Connection: close` unless kept alive. */
export function responseHead(status: number, headers: string, contentLength: number, keepAlive: boolean): Buffer {
  return Buffer.from(
    `HTTP/1.1 ${status} ${REASONS[status] ?? ''}\r\nDate: ${httpDate()}\r\n${headers}Content-Length: ${contentLength}\r\n` +
      `${keepAlive ? '' : 'Connection: close\r\n'}\r\n`,
    'latin1',
  );
}
