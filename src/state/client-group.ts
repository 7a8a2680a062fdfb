/**
 * Client addresses as the state stores key them. Rate and harvest counters
 * group clients by network (a /24, a /64: big senders retry from a neighbour,
 * and one IPv6 host owns a whole /64), the allowlist cache by exact address.
 * Either way one client must always give one key, whatever spelling the
 * socket or a HELO literal used: IPv4-mapped IPv6 (`::ffff:192.0.2.1`, what a
 * dual-stack listener reports) folds to IPv4, IPv6 is written in RFC 5952
 * canonical form, and a zone id (`fe80::1%eth0`) is dropped.
 */
import net from 'node:net';

/** A parsed address: 4 bytes for IPv4 (mapped IPv6 included), 16 for IPv6. */
export interface IpBytes {
  readonly family: 'ipv4' | 'ipv6';
  readonly bytes: Uint8Array;
}

/**
 * Parses an IP address as a socket reports it; undefined for anything else
 * (a Unix socket path, an empty string). IPv4-mapped IPv6 folds to IPv4.
 */
export function parseIp(address: string): IpBytes | undefined {
  const percent = address.indexOf('%');
  const bare = percent === -1 ? address : address.slice(0, percent);
  const version = net.isIP(bare);
  if (version === 4) return { family: 'ipv4', bytes: ipv4Bytes(bare) };
  if (version !== 6) return undefined;
  const bytes = ipv6Bytes(bare);
  if (isMapped(bytes)) return { family: 'ipv4', bytes: bytes.subarray(12) };
  return { family: 'ipv6', bytes };
}

/** Whether two spellings name the same address (mapped IPv6 equals its IPv4). */
export function sameAddress(a: IpBytes, b: IpBytes): boolean {
  if (a.family !== b.family) return false;
  for (let i = 0; i < a.bytes.length; i++) if (a.bytes[i] !== b.bytes[i]) return false;
  return true;
}

/** The address in canonical text: dotted quad, or RFC 5952 IPv6. */
export function formatIp(ip: IpBytes): string {
  return ip.family === 'ipv4' ? ip.bytes.join('.') : formatIpv6(ip.bytes);
}

/**
 * One key per client address: canonical text, IPv4-mapped folded. Text that is
 * not an IP address is its own key, unchanged, so a caller never has to
 * special-case a socket without a remote address.
 */
export function addressKey(address: string): string {
  const ip = parseIp(address);
  return ip === undefined ? address : formatIp(ip);
}

/**
 * The network a client is counted in: `192.0.2.0/24`, `2001:db8:1:2::/64`.
 * A full-length prefix (32, 128) gives the address itself without a suffix.
 * Prefixes outside 0..32 / 0..128 are clamped (the policy loader validates them).
 */
export function clientGroup(address: string, group: { readonly ipv4: number; readonly ipv6: number }): string {
  const ip = parseIp(address);
  if (ip === undefined) return address;
  const bits = ip.bytes.length * 8;
  const prefix = Math.max(0, Math.min(bits, Math.trunc(ip.family === 'ipv4' ? group.ipv4 : group.ipv6)));
  if (prefix === bits) return formatIp(ip);
  const masked = new Uint8Array(ip.bytes.length);
  const full = prefix >> 3;
  masked.set(ip.bytes.subarray(0, full));
  const rest = prefix & 7;
  if (rest !== 0) masked[full] = (ip.bytes[full] ?? 0) & (0xff << (8 - rest));
  return `${formatIp({ family: ip.family, bytes: masked })}/${prefix}`;
}

function isMapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Caller has checked `net.isIPv4`. */
function ipv4Bytes(text: string): Uint8Array {
  return Uint8Array.from(text.split('.'), Number);
}

/** Caller has checked `net.isIPv6` and removed any zone id. */
function ipv6Bytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let body = text;
  // An embedded dotted quad (::ffff:1.2.3.4) fills the last four bytes.
  const lastColon = body.lastIndexOf(':');
  const tailText = body.slice(lastColon + 1);
  if (tailText.includes('.')) {
    out.set(ipv4Bytes(tailText), 12);
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const doubleColon = body.indexOf('::');
  const head = doubleColon === -1 ? body : body.slice(0, doubleColon);
  const tail = doubleColon === -1 ? '' : body.slice(doubleColon + 2);
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === '' ? [] : tail.split(':');
  const write = (group: string, i: number): void => {
    const n = parseInt(group, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  };
  headGroups.forEach((g, i) => write(g, i));
  tailGroups.forEach((g, i) => write(g, 8 - tailGroups.length + i));
  // write() also wrote the placeholder "0:0" groups over the dotted quad: restore it.
  if (tailText.includes('.')) out.set(ipv4Bytes(tailText), 12);
  return out;
}

/** RFC 5952 §4: lower case, no leading zeros, the longest run (2+) of zero groups as `::`, leftmost on ties. */
function formatIpv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1;
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
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}
