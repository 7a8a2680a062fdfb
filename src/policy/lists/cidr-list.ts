/**
 * Address lists (trusted proxies, allow and deny lists) compiled once at load
 * into an index: one map per prefix length from masked network to entry, and
 * in front of those a map from each /16 (IPv4) or /32 (IPv6) to the prefix
 * lengths that have an entry inside it. A lookup probes only those (none, for
 * an address in no listed /16 or /32) plus the few lengths shorter than a
 * bucket: its cost does not grow with the number of entries. Not
 * `net.BlockList`: it walks its rules one by one
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
   * Anything that is not an IP address is simply not listed. An address the
   * caller has parsed already (`parseIp`, which folds mapped ones) is used as is.
   */
  has(address: string | Ip): boolean;
  /** The first entry (lowest line, as in a Postfix table) holding `address`, for messages that name the line. */
  match(address: string | Ip): CidrEntry | undefined;
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
  const ipv4 = new FamilyIndex<number>(IPV4_BUCKET_BITS);
  const ipv6 = new FamilyIndex<string>(IPV6_BUCKET_BITS);
  const compiled: CidrEntry[] = [];
  const warnings: string[] = [];
  for (const raw of entries) {
    const { entry, ip } = compileEntry(raw.value.trim(), raw.line, source);
    // The bucket is the network's first 32 bits, cut to the bucket size (bytesToUint reads the first 4 bytes of either family).
    const first32 = bytesToUint(ip.bytes);
    if (ip.family === 'ipv4') ipv4.add(entry, ipv4Network(first32, entry.prefix), first32);
    else ipv6.add(entry, ipv6Key(ipv6Text(ip.bytes), ip.bytes, entry.prefix), first32);
    if (entry.hostBitsSet) {
      warnings.push(`${source}:${entry.line}: host bits set in ${entry.value}; matching the whole /${entry.prefix}`);
    }
    compiled.push(entry);
  }
  ipv4.seal();
  ipv6.seal();
  const match = (address: string | Ip): CidrEntry | undefined => {
    if (compiled.length === 0) return undefined;
    // Sockets report link-local peers with a zone id (dropped here; entries never
    // carry one), and both ::ffff:192.0.2.1 and ::ffff:c000:201 are the IPv4 client 192.0.2.1.
    const ip = typeof address === 'string' ? parseIp(address) : address;
    if (ip === undefined) return undefined;
    const first32 = bytesToUint(ip.bytes);
    let best: CidrEntry | undefined;
    if (ip.family === 'ipv4') {
      for (const { prefix, networks } of ipv4.tablesFor(first32)) best = earlier(best, networks.get(ipv4Network(first32, prefix)));
    } else {
      const tables = ipv6.tablesFor(first32);
      const text = tables.length > 0 ? ipv6Text(ip.bytes) : '';
      for (const { prefix, networks } of tables) best = earlier(best, networks.get(ipv6Key(text, ip.bytes, prefix)));
    }
    return best;
  };
  return Object.freeze({
    source,
    size: compiled.length,
    entries: Object.freeze(compiled),
    warnings: Object.freeze(warnings),
    has: (address: string | Ip) => match(address) !== undefined,
    match,
  });
}

/** An IPv4 address's /16 and an IPv6 address's /32 name its bucket. */
const IPV4_BUCKET_BITS = 16;
const IPV6_BUCKET_BITS = 32;

/** One prefix length's entries, by masked network (a number for IPv4, ipv6Key for IPv6). */
interface PrefixTable<K> {
  readonly prefix: number;
  readonly networks: Map<K, CidrEntry>;
}

/**
 * One family's entries. A lookup probes the tables of prefix lengths shorter
 * than a bucket (an entry there spans many buckets; lists hold few such), then
 * those of its bucket. Without buckets, every lookup probed every prefix
 * length in the file: 2 × 13 map probes per IPv4 client for the verdict
 * bench's lists, most of them cache misses inside a vet.
 */
class FamilyIndex<K> {
  readonly #bucketBits: number;
  readonly #tables = new Map<number, PrefixTable<K>>();
  /** Tables of prefixes shorter than a bucket: probed for every address. */
  readonly #wide: PrefixTable<K>[] = [];
  /** Bucket (the first #bucketBits bits) → tables with an entry inside it (and, once sealed, the wide ones). */
  readonly #buckets = new Map<number, PrefixTable<K>[]>();

  constructor(bucketBits: number) {
    this.#bucketBits = bucketBits;
  }

  /** Adds `entry` under `key` (its masked network); `first32` is the network's first 32 bits. The first line wins, as in a Postfix table. */
  add(entry: CidrEntry, key: K, first32: number): void {
    let table = this.#tables.get(entry.prefix);
    if (table === undefined) {
      table = { prefix: entry.prefix, networks: new Map() };
      this.#tables.set(entry.prefix, table);
      if (entry.prefix < this.#bucketBits) this.#wide.push(table);
    }
    if (!table.networks.has(key)) table.networks.set(key, entry);
    if (entry.prefix < this.#bucketBits) return;
    const bucket = this.#bucket(first32);
    const tables = this.#buckets.get(bucket);
    if (tables === undefined) this.#buckets.set(bucket, [table]);
    else if (!tables.includes(table)) tables.push(table);
  }

  /** After the last add(): each bucket's tables start with the wide ones, so a lookup walks one array. */
  seal(): void {
    for (const [bucket, tables] of this.#buckets) this.#buckets.set(bucket, [...this.#wide, ...tables]);
  }

  /** The tables an address whose first 32 bits are `first32` may be in. */
  tablesFor(first32: number): readonly PrefixTable<K>[] {
    return this.#buckets.get(this.#bucket(first32)) ?? this.#wide;
  }

  #bucket(first32: number): number {
    return first32 >>> (32 - this.#bucketBits);
  }
}

/** Of two entries, the one on the lower line (the first in the file wins). */
function earlier(best: CidrEntry | undefined, entry: CidrEntry | undefined): CidrEntry | undefined {
  return entry !== undefined && (best === undefined || entry.line < best.line) ? entry : best;
}

function ipv4Network(n: number, prefix: number): number {
  return prefix === 0 ? 0 : (n & (-1 << (32 - prefix))) >>> 0;
}

/** An IPv6 address's 16 bytes as 16 characters (one per byte), built once per lookup: every key is cut from it. */
function ipv6Text(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return text;
}

/** The bytes under `prefix`, host bits cleared, as a map key: whole bytes cut from `text` (ipv6Text), then the partial byte masked. */
function ipv6Key(text: string, bytes: Uint8Array, prefix: number): string {
  const full = prefix >> 3;
  const rest = prefix & 7;
  const head = text.slice(0, full);
  return rest === 0 ? head : head + String.fromCharCode((bytes[full] ?? 0) & (0xff << (8 - rest)) & 0xff);
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
