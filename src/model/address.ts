/** IP addresses in their one canonical 16-byte form (IPv4 as ::ffff:a.b.c.d), the form every map uses, and back. */
import { isIPv4, isIPv6 } from 'node:net';

/** 16-byte form used in every map: IPv6 as is, IPv4 as ::ffff:a.b.c.d. */
export function encodeAddr(address: string): Buffer {
  const buf = Buffer.alloc(16);
  writeAddr(buf, 0, address);
  return buf;
}

/** encodeAddr into `buf` at `offset` (16 bytes), for encoders that fill one buffer with many addresses. */
export function writeAddr(buf: Buffer, offset: number, address: string): void {
  if (writeDottedQuad(buf, offset, address)) return;
  buf.fill(0, offset, offset + 16);
  if (isIPv4(address)) {
    buf.writeUInt16BE(0xffff, offset + 10);
    for (const [i, octet] of address.split('.').entries()) buf.writeUInt8(Number(octet), offset + 12 + i);
    return;
  }
  if (!isIPv6(address)) throw new Error(`not an IP address: ${address}`);
  if (address.includes('%'))
    throw new Error(`a scoped address (zone id) cannot be a service or endpoint address: ${address}`);
  for (const [i, group] of ipv6Groups(address).entries()) buf.writeUInt16BE(group, offset + i * 2);
}

/**
 * The common case without regular expressions or allocations: four decimal octets (no leading zeros, as isIPv4
 * requires). Anything else is left to the general path.
 */
function writeDottedQuad(buf: Buffer, offset: number, address: string): boolean {
  let octet = 0;
  let digits = 0;
  let part = 0;
  for (let i = 0; i <= address.length; i++) {
    const c = i < address.length ? address.charCodeAt(i) : 46;
    if (c === 46) {
      if (digits === 0 || part > 3) return false;
      buf[offset + 12 + part++] = octet;
      octet = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && !(digits === 1 && octet === 0)) {
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return false;
    } else return false;
  }
  if (part !== 4) return false;
  buf.fill(0, offset, offset + 10);
  buf[offset + 10] = 0xff;
  buf[offset + 11] = 0xff;
  return true;
}

/** The eight 16-bit groups of an IPv6 literal (with '::' and a dotted IPv4 tail expanded). */
function ipv6Groups(address: string): number[] {
  let text = address;
  const dotted = text.match(/^(.*:)(\d+)\.(\d+)\.(\d+)\.(\d+)$/);
  if (dotted) {
    const [, prefix, a, b, c, d] = dotted.map((part, i) => (i < 2 ? part : Number(part))) as [
      string,
      string,
      number,
      number,
      number,
      number,
    ];
    text = `${prefix}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  return [...headGroups, ...new Array<string>(zeros).fill('0'), ...tailGroups].map((g) => Number.parseInt(g, 16));
}

export function isV4Mapped(buf: Buffer): boolean {
  for (let i = 0; i < 10; i++) if (buf[i] !== 0) return false;
  return buf[10] === 0xff && buf[11] === 0xff;
}

export function decodeAddr(buf: Buffer): string {
  if (isV4Mapped(buf)) return `${buf[12]}.${buf[13]}.${buf[14]}.${buf[15]}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(buf.readUInt16BE(i).toString(16));
  return compressV6(groups);
}

function compressV6(groups: string[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestStart < 0) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLen).join(':')}`;
}

/** The wildcard of either family. */
export function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

export interface HostPort {
  /** A name or an IP; "" for ":port" (every local address). */
  host: string;
  port: number;
}

/**
 * The one reading of an address with a port, for every setting that takes one
 * ([metrics] listen, [xds] address): "host:port", "[ipv6]:port" or ":port".
 * Null when it is none of them; the port's range is hostPortProblem's to judge.
 */
export function parseHostPort(text: string): HostPort | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]*)):(\d{1,5})$/.exec(text);
  return m ? { host: m[1] ?? m[2] ?? '', port: Number(m[3]) } : null;
}

/** What is wrong with an address setting, or undefined. `connect`: a peer to dial (needs a host, port 0 is no port). */
export function hostPortProblem(text: string, use: 'listen' | 'connect'): string | undefined {
  const parsed = parseHostPort(text);
  if (!parsed || (use === 'connect' && parsed.host === '')) {
    return use === 'listen'
      ? 'must be host:port, [ipv6]:port or :port (every address)'
      : 'must be host:port (IPv6 as [addr]:port), e.g. "istiod.istio-system.svc:15012"';
  }
  const min = use === 'connect' ? 1 : 0;
  if (parsed.port < min || parsed.port > 65535) return `port ${parsed.port} out of range ${min}..65535`;
  return undefined;
}
