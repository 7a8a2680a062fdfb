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
import net from 'node:net';

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
    const entry = Object.freeze(compileEntry(raw.value.trim(), raw.line, source));
    if (entry.family === 'ipv4') firstWins(ipv4, entry.prefix, ipv4Network(ipv4Number(ipv4Bytes(entry.address)), entry.prefix), entry);
    else firstWins(ipv6, entry.prefix, ipv6Key(ipv6Bytes(entry.address), entry.prefix), entry);
    if (entry.hostBitsSet) {
      warnings.push(`${source}:${entry.line}: host bits set in ${entry.value}; matching the whole /${entry.prefix}`);
    }
    compiled.push(entry);
  }
  const match = (address: string): CidrEntry | undefined => {
    if (compiled.length === 0) return undefined;
    const folded = foldAddress(address);
    if (folded === undefined) return undefined;
    let best: CidrEntry | undefined;
    if (folded.family === 'ipv4') {
      const n = ipv4Number(ipv4Bytes(folded.address));
      for (const [prefix, networks] of ipv4) {
        const entry = networks.get(ipv4Network(n, prefix));
        if (entry !== undefined && (best === undefined || entry.line < best.line)) best = entry;
      }
    } else {
      const bytes = ipv6Bytes(folded.address);
      for (const [prefix, networks] of ipv6) {
        const entry = networks.get(ipv6Key(bytes, prefix));
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

function ipv4Number(bytes: Uint8Array): number {
  return (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0;
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

function compileEntry(value: string, line: number, source: string): CidrEntry {
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
  const version = net.isIP(addressText);
  if (version === 0) fail(`not an IP address: "${addressText}"`);

  let family: 'ipv4' | 'ipv6' = version === 4 ? 'ipv4' : 'ipv6';
  let bytes = family === 'ipv4' ? ipv4Bytes(addressText) : ipv6Bytes(addressText);
  let prefix = fullLength(family);
  if (prefixText !== undefined) {
    if (!PREFIX_RE.test(prefixText)) fail(`bad prefix length "/${prefixText}"`);
    prefix = Number(prefixText);
    if (prefix > fullLength(family)) fail(`prefix /${prefix} out of range for ${family} (0-${fullLength(family)})`);
  }

  // ::ffff:192.0.2.0/120 is written by people who mean 192.0.2.0/24; has()
  // folds mapped addresses to IPv4, so the entry has to be folded the same way.
  let address = addressText;
  if (family === 'ipv6' && prefix >= 96 && isMapped(bytes)) {
    family = 'ipv4';
    bytes = bytes.subarray(12);
    prefix -= 96;
    address = bytes.join('.');
  }

  return { value, line, family, address, prefix, hostBitsSet: hasHostBits(bytes, prefix) };
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

/** The address with a zone id dropped and IPv4-mapped IPv6 folded to IPv4, or undefined for non-IPs. */
function foldAddress(address: string): { address: string; family: 'ipv4' | 'ipv6' } | undefined {
  // Sockets report link-local peers with a zone id; entries never carry one.
  const bare = address.includes('%') ? address.slice(0, address.indexOf('%')) : address;
  const version = net.isIP(bare);
  if (version === 4) return { address: bare, family: 'ipv4' };
  if (version !== 6) return undefined;
  const bytes = ipv6Bytes(bare);
  // Both ::ffff:192.0.2.1 and ::ffff:c000:201 are the IPv4 client 192.0.2.1.
  if (isMapped(bytes)) return { address: bytes.subarray(12).join('.'), family: 'ipv4' };
  return { address: bare, family: 'ipv6' };
}

function isMapped(bytes: Uint8Array): boolean {
  if (bytes.length !== 16) return false;
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** Caller has checked `net.isIPv4`. */
function ipv4Bytes(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

/** Caller has checked `net.isIPv6` (and removed any zone id). */
function ipv6Bytes(text: string): Uint8Array {
  const out = new Uint8Array(16);
  let body = text;
  let tail: Uint8Array | undefined;
  // An embedded dotted quad (::ffff:1.2.3.4) fills the last four bytes.
  const lastColon = body.lastIndexOf(':');
  if (body.slice(lastColon + 1).includes('.')) {
    tail = ipv4Bytes(body.slice(lastColon + 1));
    body = body.slice(0, lastColon + 1) + '0:0';
  }
  const [head = '', rest] = body.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const zeros = 8 - headGroups.length - restGroups.length;
  const groups = [...headGroups, ...Array<string>(rest === undefined ? 0 : zeros).fill('0'), ...restGroups];
  groups.forEach((group, i) => {
    const n = parseInt(group, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  if (tail) out.set(tail, 12);
  return out;
}
