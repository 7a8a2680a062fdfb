/**
 * The names we ask DNS about a client (RFC 5782 §2.1, §2.4): the address's
 * labels reversed — octets for IPv4, nibbles for IPv6 — under a DNSxL zone or
 * under in-addr.arpa / ip6.arpa for its PTR record.
 */
import type { Ip } from '../../core/ip.js';

/** `192.0.2.1` → `1.2.0.192`; `2001:db8::1` → `1.0.0.0.…8.b.d.0.1.0.0.2` (32 nibbles). */
export function reversedLabels(ip: Ip): string {
  const b = ip.bytes;
  if (ip.family === 'ipv4') return `${b[3] ?? 0}.${b[2] ?? 0}.${b[1] ?? 0}.${b[0] ?? 0}`;
  let name = '';
  for (let i = b.length - 1; i >= 0; i--) {
    const byte = b[i] ?? 0;
    name += `${HEX[byte & 0x0f]}.${HEX[byte >> 4]}${i === 0 ? '' : '.'}`;
  }
  return name;
}

const HEX = '0123456789abcdef';

/**
 * The name to look up in a DNSBL/DNSWL zone (`2.0.0.127.zen.example.test`).
 * A caller asking several zones about one address passes `reversed`
 * (reversedLabels of it) so the labels are built once.
 */
export function zoneQueryName(ip: Ip, zone: string, reversed: string = reversedLabels(ip)): string {
  return `${reversed}.${withoutTrailingDot(zone)}`;
}

/** The PTR name of an address (`1.2.0.192.in-addr.arpa`). */
export function ptrQueryName(ip: Ip): string {
  return `${reversedLabels(ip)}.${ip.family === 'ipv4' ? 'in-addr.arpa' : 'ip6.arpa'}`;
}

/** `bl.example.` → `bl.example`: a zone written absolute names the same zone. */
export function withoutTrailingDot(zone: string): string {
  return zone.endsWith('.') ? zone.slice(0, -1) : zone;
}
