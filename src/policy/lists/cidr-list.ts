/**
 * Address lists (trusted proxies, allow and deny lists) compiled once at load
 * into an index: one map per prefix length from masked network to entry, so
 * a lookup costs one map probe per distinct prefix length in the file (a few
 * µs at 10,000 entries). Not `net.BlockList`: it walks its rules one by one
 * (about 140 µs per miss at 10,000 entries here) and checks IPv4 addresses
 * against IPv6 rules as ::ffff:a.b.c.d, so `::/0` matched every IPv4 client.
 * A bad line throws `CidrListError` naming source and
 * line, so a typo stops a (re)load instead of silently matching nothing; a
 * connection only ever calls `has()`.
 *
 * File form, like a Postfix cidr table without the right-hand side: one address
 * or CIDR per line, `#` starts a comment, blank lines are ignored.
 */
import { bytesToUint, foldMapped, isIpv4Mapped, parseIp, type Ip } from '../../core/ip.js';

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

export interface CidrList {
  /** File name or config key the entries came from, for messages. */
  readonly source: string;
  readonly size: number;
  readonly entries: readonly CidrEntry[];
  /** `source:line: …` notes for accepted but suspicious lines (host bits set). */
  readonly warnings: readonly string[];
  /**
   * Whether `address` falls in any entry. IPv4-mapped IPv6 (`::ffff:192.0.2.1`,
   * what a dual-stack listener reports for IPv4 clients) is matched as IPv4.
   * Anything that is not an IP address is simply not listed.
   */
  has(address: string): boolean;
  /** The first entry (lowest line, as in a Postfix table) holding `address`, for messages that name the line. */
  match(address: string): CidrEntry | undefined;
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

export function compileCidrList(entries: readonly { value: string; line: number }[], source: string): CidrList {
  const ipv4 = new Map<number, Map<number, CidrEntry>>();
  const ipv6 = new Map<number, Map<string, CidrEntry>>();
  const compiled: CidrEntry[] = [];
  const warnings: string[] = [];
  for (const raw of entries) {
    const { entry, ip } = compileEntry(raw.value.trim(), raw.line, source);
    if (ip.family === 'ipv4') firstWins(ipv4, entry.prefix, ipv4Network(bytesToUint(ip.bytes), entry.prefix), entry);
    else firstWins(ipv6, entry.prefix, ipv6Key(ip.bytes, entry.prefix), entry);
    if (entry.hostBitsSet) {
      warnings.push(`${source}:${entry.line}: host bits set in ${entry.value}; matching the whole /${entry.prefix}`);
    }
    compiled.push(entry);
  }
  const match = (address: string): CidrEntry | undefined => {
    if (compiled.length === 0) return undefined;
    // Sockets report link-local peers with a zone id (dropped here; entries never
    // carry one), and both ::ffff:192.0.2.1 and ::ffff:c000:201 are the IPv4 client 192.0.2.1.
    const ip = parseIp(address);
    if (ip === undefined) return undefined;
    let best: CidrEntry | undefined;
    if (ip.family === 'ipv4') {
      const n = bytesToUint(ip.bytes);
      for (const [prefix, networks] of ipv4) {
        const entry = networks.get(ipv4Network(n, prefix));
        if (entry !== undefined && (best === undefined || entry.line < best.line)) best = entry;
      }
    } else {
      for (const [prefix, networks] of ipv6) {
        const entry = networks.get(ipv6Key(ip.bytes, prefix));
        if (entry !== undefined && (best === undefined || entry.line < best.line)) best = entry;
      }
    }
    return best;
  };
  return Object.freeze({
    source,
    size: compiled.length,
    entries: Object.freeze(compiled),
    warnings: Object.freeze(warnings),
    has: (address: string) => match(address) !== undefined,
    match,
  });
}

/** The first line wins, as in a Postfix table. */
function firstWins<K>(byPrefix: Map<number, Map<K, CidrEntry>>, prefix: number, key: K, entry: CidrEntry): void {
  let networks = byPrefix.get(prefix);
  if (networks === undefined) {
    networks = new Map();
    byPrefix.set(prefix, networks);
  }
  if (!networks.has(key)) networks.set(key, entry);
}

function ipv4Network(n: number, prefix: number): number {
  return prefix === 0 ? 0 : (n & (-1 << (32 - prefix))) >>> 0;
}

/** The bytes under `prefix`, host bits cleared, as a map key. */
function ipv6Key(bytes: Uint8Array, prefix: number): string {
  let key = '';
  const full = prefix >> 3;
  for (let i = 0; i < full; i++) key += String.fromCharCode(bytes[i] ?? 0);
  const rest = prefix & 7;
  if (rest !== 0) key += String.fromCharCode((bytes[full] ?? 0) & (0xff << (8 - rest)) & 0xff);
  return key;
}

export function parseCidrListText(text: string, source: string): CidrList {
  const entries: { value: string; line: number }[] = [];
  text.split(/\r?\n/).forEach((rawLine, i) => {
    // An address never contains '#', so a trailing comment is safe to cut.
    const hash = rawLine.indexOf('#');
    const value = (hash === -1 ? rawLine : rawLine.slice(0, hash)).trim();
    if (value !== '') entries.push({ value, line: i + 1 });
  });
  return compileCidrList(entries, source);
}

/** The entry, frozen, and its network's bytes for the index. */
function compileEntry(value: string, line: number, source: string): { entry: CidrEntry; ip: Ip } {
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
