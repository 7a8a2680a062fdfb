/**
 * Client addresses as the DNS checks need them: parsed to bytes once, with
 * IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a dual-stack listener reports for
 * an IPv4 client) folded to IPv4, because DNSBLs and PTR records know that
 * client under its IPv4 name (RFC 5782 §2.4 has no mapped form).
 */
import { isIP } from 'node:net';

export interface Ip {
  readonly family: 4 | 6;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

/** The address as bytes, or undefined when `text` is not an IP address. */
export function parseIp(text: string): Ip | undefined {
  const bare = text.replace(/%.*$/, ''); // a link-local zone id names our interface, not the address
  const family = isIP(bare);
  if (family === 4) return { family: 4, bytes: ipv4Bytes(bare) };
  if (family !== 6) return undefined;
  const bytes = ipv6Bytes(bare);
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? { family: 4, bytes: bytes.slice(12) } : { family: 6, bytes };
}

/** Whether two texts name the same address (`2001:DB8::1` = `2001:db8:0::1`, `::ffff:1.2.3.4` = `1.2.3.4`). */
export function sameIp(a: string, b: string): boolean {
  const x = parseIp(a);
  const y = parseIp(b);
  return x !== undefined && y !== undefined && x.family === y.family && x.bytes.every((byte, i) => byte === y.bytes[i]);
}

/** Dotted quad for IPv4, the full lowercase form for IPv6 (for messages and lookups). */
export function formatIp(ip: Ip): string {
  if (ip.family === 4) return Array.from(ip.bytes).join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((ip.bytes[i] ?? 0) << 8) | (ip.bytes[i + 1] ?? 0)).toString(16));
  return groups.join(':');
}

/** An IPv4 address as an unsigned 32-bit integer (how AnswerRange stores its bounds); undefined if not IPv4. */
export function ipv4ToUint(text: string): number | undefined {
  const ip = parseIp(text);
  if (ip?.family !== 4) return undefined;
  return ip.bytes.reduce((n, b) => n * 256 + b, 0);
}

function ipv4Bytes(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

/** Expects text that isIP() accepted as IPv6. */
function ipv6Bytes(text: string): Uint8Array {
  let s = text;
  // An embedded dotted quad (::ffff:1.2.3.4) is the last two groups.
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (quad) {
    const [a = 0, b = 0, c = 0, d = 0] = ipv4Bytes(quad[1] as string);
    s = `${s.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = s.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : new Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  const bytes = new Uint8Array(16);
  [...headGroups, ...zeros, ...tailGroups].forEach((g, i) => {
    const n = parseInt(g, 16);
    bytes[i * 2] = n >> 8;
    bytes[i * 2 + 1] = n & 0xff;
  });
  return bytes;
}
