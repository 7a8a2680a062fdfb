/**
 * IP addresses as every part needs them: parsed to bytes once, compared by
 * value rather than spelling, written back in one canonical text, so a client
 * gives the same key, list match and DNS name however its address was spelt
 * (by a socket, a PROXY header, a HELO literal, a list file or a DNS answer).
 *
 * IPv4-mapped IPv6 (`::ffff:192.0.2.1`, RFC 4291 §2.5.5.2) is what a
 * dual-stack listener reports for an IPv4 client, so parsing folds it to IPv4
 * unless asked not to; formatting keeps a mapped address that was not folded
 * in its mixed form (RFC 5952 §5), as a PROXY header must pass it on.
 */
import { isIP, isIPv4 } from 'node:net';

export type IpFamily = 'ipv4' | 'ipv6';

export interface Ip {
  readonly family: IpFamily;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  readonly bytes: Uint8Array;
}

export interface ParseIpOptions {
  /** Keep IPv4-mapped IPv6 as IPv6 (a CIDR list entry folds it only when its prefix allows). */
  readonly keepMapped?: boolean;
}

/**
 * The address `text` names, or undefined when it is not an IP address (a host
 * name, a Unix socket path, an empty string). A zone id (`fe80::1%eth0`,
 * RFC 4007 §11) names one of our interfaces, not the address, and is dropped.
 */
export function parseIp(text: string, options: ParseIpOptions = {}): Ip | undefined {
  const percent = text.indexOf('%');
  const bare = percent === -1 ? text : text.slice(0, percent);
  const version = isIP(bare);
  if (version === 4) return { family: 'ipv4', bytes: ipv4Bytes(bare) };
  if (version !== 6) return undefined;
  const ip: Ip = { family: 'ipv6', bytes: ipv6Bytes(bare) };
  return options.keepMapped === true ? ip : foldMapped(ip);
}

/** `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): 80 zero bits, 16 one bits, the IPv4 address. */
export function isIpv4Mapped(ip: Ip): boolean {
  if (ip.family !== 'ipv6') return false;
  for (let i = 0; i < 10; i++) if (ip.bytes[i] !== 0) return false;
  return ip.bytes[10] === 0xff && ip.bytes[11] === 0xff;
}

/** The IPv4 address an IPv4-mapped one stands for; any other address unchanged. */
export function foldMapped(ip: Ip): Ip {
  return isIpv4Mapped(ip) ? { family: 'ipv4', bytes: ip.bytes.slice(12) } : ip;
}

/**
 * Whether two addresses are the same, however spelt: text is parsed first
 * (`2001:DB8::1` is `2001:db8:0::1`, `::ffff:192.0.2.1` is `192.0.2.1`), and
 * text that is not an address matches nothing, not even itself.
 */
export function sameIp(a: Ip | string, b: Ip | string): boolean {
  const x = typeof a === 'string' ? parseIp(a) : a;
  const y = typeof b === 'string' ? parseIp(b) : b;
  if (x === undefined || y === undefined || x.family !== y.family || x.bytes.length !== y.bytes.length) return false;
  for (let i = 0; i < x.bytes.length; i++) if (x.bytes[i] !== y.bytes[i]) return false;
  return true;
}

/**
 * Canonical text: a dotted quad, or IPv6 as RFC 5952 §4 writes it (lower case,
 * no leading zeros, the longest run of two or more zero groups as `::`, the
 * leftmost on a tie), IPv4-mapped with its dotted quad (§5).
 */
export function formatIp(ip: Ip): string {
  if (ip.family === 'ipv4') return dottedQuad(ip.bytes, 0);
  if (isIpv4Mapped(ip)) return `::ffff:${dottedQuad(ip.bytes, 12)}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((ip.bytes[i] ?? 0) << 8) | (ip.bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1; // §4.2.2: a single zero group is written out, never `::`
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/**
 * A dotted quad as an unsigned 32-bit number (how answer ranges compare);
 * undefined for anything else, `::ffff:` forms and zone ids included: a
 * policy file and an A record both write plain dotted quads.
 */
export function ipv4ToUint(text: string): number | undefined {
  return isIPv4(text) ? bytesToUint(ipv4Bytes(text)) : undefined;
}

/** An IPv4 address's 4 bytes as an unsigned 32-bit number. */
export function bytesToUint(bytes: Uint8Array): number {
  return (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0;
}

/** An unsigned 32-bit number as a dotted quad. */
export function uintToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff].join('.');
}

/** The four bytes from `at` as a dotted quad (a template, not TypedArray.join: it runs on every connection). */
function dottedQuad(bytes: Uint8Array, at: number): string {
  return `${bytes[at] ?? 0}.${bytes[at + 1] ?? 0}.${bytes[at + 2] ?? 0}.${bytes[at + 3] ?? 0}`;
}

/**
 * Caller has checked that `text` is a dotted quad (`isIP() === 4`, or the tail
 * of an address `isIP()` accepted as IPv6), so every character is a digit or a
 * dot and every octet is at most 255. A digit loop, not split and Number: this
 * runs for every connection and every A answer compared.
 */
function ipv4Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(4);
  let octet = 0;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === DOT) {
      bytes[octet++] = value;
      value = 0;
    } else value = value * 10 + (c - ZERO);
  }
  bytes[octet] = value;
  return bytes;
}

const DOT = 0x2e;
const ZERO = 0x30;

/**
 * Caller has checked `isIP() === 6` and removed any zone id. RFC 4291 §2.2:
 * eight hex groups, one `::` standing for a run of zero groups, and the last
 * two groups optionally written as a dotted quad.
 */
function ipv6Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(16);
  const gap = text.indexOf('::');
  const head = gap === -1 ? text : text.slice(0, gap);
  const tail = gap === -1 ? '' : text.slice(gap + 2);
  let at = 0;
  if (head !== '') for (const group of head.split(':')) at = putGroup(bytes, at, group);
  if (tail !== '') {
    const groups = tail.split(':');
    // The tail ends at the last byte; a dotted quad is two groups' worth.
    at = 16;
    for (const group of groups) at -= group.includes('.') ? 4 : 2;
    for (const group of groups) at = putGroup(bytes, at, group);
  }
  return bytes;
}

/** Writes one hex group (2 bytes) or a trailing dotted quad (4 bytes) at `at`; returns the next offset. */
function putGroup(bytes: Uint8Array, at: number, group: string): number {
  if (group.includes('.')) {
    bytes.set(ipv4Bytes(group), at);
    return at + 4;
  }
  const n = parseInt(group, 16);
  bytes[at] = n >> 8;
  bytes[at + 1] = n & 0xff;
  return at + 2;
}

/**
 * Loopback, private (RFC 1918, RFC 4193), link-local and shared (RFC 6598)
 * addresses: never a mail server on the internet, so a client from one is
 * someone testing or a host of the admin's own network.
 */
export function isLocalAddress(ip: Ip): boolean {
  const b = foldMapped(ip).bytes;
  if (b.length === 4) {
    const [a = 0, second = 0] = b;
    return a === 127 || a === 10 || (a === 172 && second >= 16 && second < 32) || (a === 192 && second === 168) || (a === 169 && second === 254) || (a === 100 && second >= 64 && second < 128);
  }
  const first = b[0] ?? 0;
  const loopback = b.every((byte, i) => byte === (i === 15 ? 1 : 0));
  return loopback || (first & 0xfe) === 0xfc || (first === 0xfe && ((b[1] ?? 0) & 0xc0) === 0x80);
}
