/**
 * A network an SPF walk found: an address and a prefix length, host bits
 * cleared, in the one spelling a list file and its de-duplication use.
 *
 * RFC 7208 §5.6 compares the client with the network the prefix makes of
 * the address, so `ip4:192.0.2.1/24` means 192.0.2.0/24; writing it that way
 * keeps the policy loader from warning "host bits set". IPv4-mapped IPv6 with
 * a prefix of 96 or more is written as the IPv4 network it covers, as the
 * list loader (src/policy/lists/cidr-list.ts) folds it, so one network has one
 * spelling however a record wrote it.
 */
import { foldMapped, formatIp, isIpv4Mapped, type Ip } from '../../core/ip.js';

export interface Network {
  readonly ip: Ip;
  /** Bits; 32 or 128 is a single address. */
  readonly prefix: number;
}

export function fullLength(family: Ip['family']): number {
  return family === 'ipv4' ? 32 : 128;
}

/** The network of `prefix` bits around `ip` (the caller checked the prefix fits the family). */
export function networkOf(ip: Ip, prefix: number): Network {
  let address = ip;
  let bits = prefix;
  if (bits >= 96 && isIpv4Mapped(address)) {
    address = foldMapped(address);
    bits -= 96;
  }
  const bytes = new Uint8Array(address.bytes);
  for (let bit = bits; bit < bytes.length * 8; bit++) bytes[bit >> 3] = (bytes[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return { ip: { family: address.family, bytes }, prefix: bits };
}

/** `192.0.2.0/24`, `2001:db8::/32`; a single address without its prefix (`192.0.2.1`), as a person would write it in a list. */
export function networkText(network: Network): string {
  const address = formatIp(network.ip);
  return network.prefix === fullLength(network.ip.family) ? address : `${address}/${network.prefix}`;
}
