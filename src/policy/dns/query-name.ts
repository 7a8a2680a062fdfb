/**
 * The names we ask DNS about a client (RFC 5782 §2.1, §2.4): the address's
 * labels reversed — octets for IPv4, nibbles for IPv6 — under a DNSxL zone or
 * under in-addr.arpa / ip6.arpa for its PTR record.
 */
import type { Ip } from '../../core/ip.js';

/** `192.0.2.1` → `1.2.0.192`; `2001:db8::1` → `1.0.0.0.…8.b.d.0.1.0.0.2` (32 nibbles). */
export function reversedLabels(ip: Ip): string {
  if (ip.family === 'ipv4') return Array.from(ip.bytes).reverse().join('.');
  const nibbles: string[] = [];
  for (const b of ip.bytes) nibbles.push((b >> 4).toString(16), (b & 0x0f).toString(16));
  return nibbles.reverse().join('.');
}

/** The name to look up in a DNSBL/DNSWL zone (`2.0.0.127.zen.example.test`). */
export function zoneQueryName(ip: Ip, zone: string): string {
  return `${reversedLabels(ip)}.${zone.replace(/\.$/, '')}`;
}

/** The PTR name of an address (`1.2.0.192.in-addr.arpa`). */
export function ptrQueryName(ip: Ip): string {
  return `${reversedLabels(ip)}.${ip.family === 'ipv4' ? 'in-addr.arpa' : 'ip6.arpa'}`;
}
