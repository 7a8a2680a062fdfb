/**
 * One line of an address list: its parse, the entry it stands for and the
 * error a bad one raises. Shared by the index on the main thread (which
 * rebuilds an entry from its text only when a lookup names it) and the
 * compile worker (cidr-build.ts), so both read a line the same way.
 */
import { foldMapped, isIpv4Mapped, parseIp, type Ip } from '../../core/ip.js';

/** One compiled line. */
export interface CidrEntry {
  /** The text as written (trimmed). */
  readonly value: string;
  /** 1-based line number in `source`. */
  readonly line: number;
  readonly family: 'ipv4' | 'ipv6';
  /** Network address as written, after folding IPv4-mapped IPv6 to IPv4. */
  readonly address: string;
  /** Prefix length in bits; a bare address gets the full length (32 or 128). */
  readonly prefix: number;
  /**
   * True when bits below the prefix are set (`192.0.2.1/24`). Accepted, as
   * Postfix does, and matched as the whole network; the loader may warn.
   */
  readonly hostBitsSet: boolean;
}

export class CidrListError extends Error {
  override readonly name = 'CidrListError';
  readonly source: string;
  readonly line: number;
  readonly reason: string;

  constructor(source: string, line: number, reason: string) {
    super(`${source}:${line}: ${reason}`);
    this.source = source;
    this.line = line;
    this.reason = reason;
  }
}

const PREFIX_RE = /^\d{1,3}$/;

/** The entry, frozen, and its network's bytes (as written, host bits kept) for the index. */
export function compileEntry(value: string, line: number, source: string): { entry: CidrEntry; ip: Ip } {
  const fail = (reason: string): never => {
    throw new CidrListError(source, line, reason);
  };
  if (value === '') fail('empty entry');
  // A Postfix cidr table line is "network action"; a list has no action, and
  // silently dropping one would hide that the admin meant something else.
  if (/\s/.test(value)) fail(`expected one address or CIDR, got "${value}"`);

  const slash = value.indexOf('/');
  const addressText = slash === -1 ? value : value.slice(0, slash);
  const prefixText = slash === -1 ? undefined : value.slice(slash + 1);

  // Zone ids (fe80::1%eth0) name an interface, not a network; BlockList would
  // take them but they would never match what a socket reports consistently.
  if (addressText.includes('%')) fail(`zone id not allowed in "${addressText}"`);
  let ip = parseIp(addressText, { keepMapped: true }) ?? fail(`not an IP address: "${addressText}"`);
  let prefix = fullLength(ip.family);
  if (prefixText !== undefined) {
    if (!PREFIX_RE.test(prefixText)) fail(`bad prefix length "/${prefixText}"`);
    prefix = Number(prefixText);
    if (prefix > fullLength(ip.family)) fail(`prefix /${prefix} out of range for ${ip.family} (0-${fullLength(ip.family)})`);
  }

  // ::ffff:192.0.2.0/120 is written by people who mean 192.0.2.0/24; has()
  // folds mapped addresses to IPv4, so the entry has to be folded the same way.
  let address = addressText;
  if (prefix >= 96 && isIpv4Mapped(ip)) {
    ip = foldMapped(ip);
    prefix -= 96;
    address = ip.bytes.join('.');
  }

  const entry: CidrEntry = { value, line, family: ip.family, address, prefix, hostBitsSet: hasHostBits(ip.bytes, prefix) };
  return { entry: Object.freeze(entry), ip };
}

/** The reason the loader and `CidrList.warnings` give for an entry with host bits set. */
export function hostBitsReason(value: string, prefix: number): string {
  return `host bits set in ${value}; matching the whole /${prefix}`;
}

function fullLength(family: 'ipv4' | 'ipv6'): number {
  return family === 'ipv4' ? 32 : 128;
}

function hasHostBits(bytes: Uint8Array, prefix: number): boolean {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    const byte = bytes[bit >> 3] ?? 0;
    if (byte & (0x80 >> (bit & 7))) return true;
  }
  return false;
}
