/**
 * Address lists (trusted proxies, allow and deny lists), compiled once at load
 * into disjoint ranges per family (cidr-build.ts), each owned by the
 * lowest-line entry covering it; a lookup is one binary search, whatever the
 * list's size, and an entry is rebuilt from its text only when a lookup
 * returns it. Not `net.BlockList`: it walks its rules one by one
 * (about 140 µs per miss at 10,000 entries here) and checks IPv4 addresses
 * against IPv6 rules as ::ffff:a.b.c.d, so `::/0` matched every IPv4 client.
 * A bad line throws `CidrListError` naming source and
 * line, so a typo stops a (re)load instead of silently matching nothing; a
 * connection only ever calls `has()` or `match()`.
 *
 * File form, like a Postfix cidr table without the right-hand side: one address
 * or CIDR per line, `#` starts a comment, blank lines are ignored.
 */
import { bytesToUint, parseIp, type Ip } from '../../core/ip.js';
import { buildFromEntries, buildFromText, entryText, type CidrListData, type ListNote, type ListOutcome } from './cidr-build.js';
import { CidrListError, compileEntry, type CidrEntry } from './cidr-entry.js';

export { CidrListError, type CidrEntry } from './cidr-entry.js';

export interface CidrList {
  /** File name or config key the entries came from, for messages. */
  readonly source: string;
  readonly size: number;
  /** Every entry in the order given, built on each read: for tests and tools, not per connection. */
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

export function compileCidrList(entries: readonly { value: string; line: number }[], source: string): CidrList {
  return listFromOutcome(buildFromEntries(entries, source, 1), source);
}

export function parseCidrListText(text: string, source: string): CidrList {
  return listFromOutcome(buildFromText(text, source, 1), source);
}

/** The list a compile (here or in a worker) produced; host-bits notes become its warnings. */
export function cidrListFromData(data: CidrListData, source: string, notes: readonly ListNote[] = []): CidrList {
  const warnings = notes.filter((n) => n.kind === 'hostBits').map((n) => `${source}:${n.line}: ${n.reason}`);
  return new IndexedCidrList(data, source, warnings);
}

function listFromOutcome(outcome: ListOutcome, source: string): CidrList {
  if (!outcome.ok) {
    const first = outcome.errors[0];
    throw new CidrListError(source, first?.line ?? 0, first?.reason ?? 'bad list');
  }
  return cidrListFromData(outcome.data, source, outcome.warnings);
}

/** Entries a lookup returned lately: blocked or allowed clients come back, and rebuilding one costs a parse. */
const MATCH_CACHE = 256;

class IndexedCidrList implements CidrList {
  readonly source: string;
  readonly size: number;
  readonly warnings: readonly string[];
  readonly #data: CidrListData;
  /** Bounded (cleared when full): a list may be shared by every session for days. */
  readonly #recent = new Map<number, CidrEntry>();

  constructor(data: CidrListData, source: string, warnings: readonly string[]) {
    this.#data = data;
    this.source = source;
    this.size = data.count;
    this.warnings = Object.freeze([...warnings]);
    // Frozen like the policy holding it; the private fields stay writable for the cache.
    Object.freeze(this);
  }

  get entries(): readonly CidrEntry[] {
    return Object.freeze(Array.from({ length: this.size }, (_, i) => this.#entry(i)));
  }

  has(address: string | Ip): boolean {
    return this.#owner(address) !== -1;
  }

  match(address: string | Ip): CidrEntry | undefined {
    const owner = this.#owner(address);
    if (owner === -1) return undefined;
    let entry = this.#recent.get(owner);
    if (entry === undefined) {
      if (this.#recent.size >= MATCH_CACHE) this.#recent.clear();
      entry = this.#entry(owner);
      this.#recent.set(owner, entry);
    }
    return entry;
  }

  /** The entry index holding `address`, or -1. */
  #owner(address: string | Ip): number {
    if (this.size === 0) return -1;
    // Sockets report link-local peers with a zone id (dropped here; entries never
    // carry one), and both ::ffff:192.0.2.1 and ::ffff:c000:201 are the IPv4 client 192.0.2.1.
    const ip = typeof address === 'string' ? parseIp(address) : address;
    if (ip === undefined) return -1;
    const d = this.#data;
    if (ip.family === 'ipv4') return d.v4Owners[rangeOf(d.v4Starts, bytesToUint(ip.bytes))] ?? -1;
    return d.v6Owners[rangeOf6(d.v6Starts, ip.bytes)] ?? -1;
  }

  #entry(index: number): CidrEntry {
    const { text, ends, lines } = this.#data;
    return compileEntry(entryText(text, ends, index), lines[index] ?? 0, this.source).entry;
  }
}

/** The last range whose start is at or below `x`; range 0 starts at 0. */
function rangeOf(starts: Uint32Array, x: number): number {
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if ((starts[mid] ?? 0) <= x) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** rangeOf for IPv6: starts are four words each, compared most significant first. */
function rangeOf6(starts: Uint32Array, bytes: Uint8Array): number {
  const w0 = bytesToUint(bytes);
  const w1 = bytesToUint(bytes.subarray(4));
  const w2 = bytesToUint(bytes.subarray(8));
  const w3 = bytesToUint(bytes.subarray(12));
  let lo = 0;
  let hi = starts.length / 4 - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    const at = mid * 4;
    const s0 = starts[at] ?? 0;
    const s1 = starts[at + 1] ?? 0;
    const s2 = starts[at + 2] ?? 0;
    const s3 = starts[at + 3] ?? 0;
    const notAbove = s0 !== w0 ? s0 < w0 : s1 !== w1 ? s1 < w1 : s2 !== w2 ? s2 < w2 : s3 <= w3;
    if (notAbove) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
