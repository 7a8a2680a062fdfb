/**
 * Generated address lists and client addresses for the verdict bench, from a
 * seeded generator so every run measures the same lists.
 *
 * Prefix lengths cycle through a fixed mix (mostly single hosts and /24s, as
 * in real block lists, plus every length from /16 to /31 and a spread of IPv6
 * ones), so a list of 100 entries has the same distinct prefix lengths as one
 * of 100,000: CidrList's lookup costs one probe per distinct prefix length,
 * and the comparison across sizes must not be skewed by a short list having
 * fewer of them.
 *
 * Address spaces are kept apart so every lookup's right answer is known:
 * entries of a space only ever cover that space, and the "clean" space
 * (100.0.0.0/8, 3fff::/16) is in no list.
 */

/** mulberry32: small, fast, good enough to scatter addresses. */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** [0, 1) */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
}

/** Where a list's entries live: the first IPv4 octet and the first IPv6 group, inclusive ranges. */
export interface Space {
  readonly v4FirstOctet: readonly [number, number];
  readonly v6FirstGroup: readonly [number, number];
}

export const BLOCK_SPACE: Space = { v4FirstOctet: [1, 99], v6FirstGroup: [0x2000, 0x27ff] };
export const ALLOW_SPACE: Space = { v4FirstOctet: [128, 223], v6FirstGroup: [0x2800, 0x2fff] };
/** In no list: clients that must match nothing come from here. */
export const CLEAN_SPACE: Space = { v4FirstOctet: [100, 100], v6FirstGroup: [0x3fff, 0x3fff] };

/** 13 distinct lengths; /32 and /24 dominate as in real lists. */
export const V4_PREFIXES = [32, 32, 32, 32, 32, 24, 24, 24, 16, 20, 22, 23, 25, 26, 27, 28, 29, 30, 31] as const;
/** 10 distinct lengths. */
export const V6_PREFIXES = [128, 128, 64, 64, 64, 48, 56, 32, 40, 96, 112, 120, 124] as const;
/** Share of IPv6 entries and clients: 3 in 10. */
const V6_EVERY = [false, false, false, true, false, false, true, false, false, true] as const;

export interface GenEntry {
  readonly family: 4 | 6;
  /** The network, host bits cleared (4 or 16 bytes). */
  readonly bytes: Uint8Array;
  readonly prefix: number;
  /** As written in the list file: `a.b.c.d/p`, `x::/p`, or a bare address for a full-length prefix. */
  readonly text: string;
}

export function isV6(i: number): boolean {
  return V6_EVERY[i % V6_EVERY.length] ?? false;
}

/** `n` entries in `space`, 30 % IPv6, prefix lengths cycling through the mixes above. */
export function generateEntries(n: number, rng: Rng, space: Space): GenEntry[] {
  const out: GenEntry[] = [];
  let v4 = 0;
  let v6 = 0;
  for (let i = 0; i < n; i++) {
    if (isV6(i)) {
      const prefix = V6_PREFIXES[v6++ % V6_PREFIXES.length] as number;
      out.push(entry(6, clearHostBits(randomAddress(6, rng, space), prefix), prefix));
    } else {
      const prefix = V4_PREFIXES[v4++ % V4_PREFIXES.length] as number;
      out.push(entry(4, clearHostBits(randomAddress(4, rng, space), prefix), prefix));
    }
  }
  return out;
}

/** A random address inside `e` (host bits random). */
export function addressInside(e: GenEntry, rng: Rng): Uint8Array {
  const bytes = randomBytes(e.bytes.length, rng);
  for (let bit = 0; bit < e.prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    const i = bit >> 3;
    bytes[i] = ((bytes[i] ?? 0) & ~mask) | ((e.bytes[i] ?? 0) & mask);
  }
  return bytes;
}

/** A random address of `family` in `space`. */
export function randomAddress(family: 4 | 6, rng: Rng, space: Space): Uint8Array {
  const bytes = randomBytes(family === 4 ? 4 : 16, rng);
  if (family === 4) {
    bytes[0] = rng.int(space.v4FirstOctet[0], space.v4FirstOctet[1]);
  } else {
    const group = rng.int(space.v6FirstGroup[0], space.v6FirstGroup[1]);
    bytes[0] = group >> 8;
    bytes[1] = group & 0xff;
  }
  return bytes;
}

export function formatAddress(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  // RFC 5952: the longest run of two or more zero groups becomes "::", as a socket reports it.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** The group a rate limiter counts the address in (/24, /64), as a string key. */
export function groupKey(bytes: Uint8Array): string {
  return Array.from(bytes.subarray(0, bytes.length === 4 ? 3 : 8)).join('.');
}

function entry(family: 4 | 6, bytes: Uint8Array, prefix: number): GenEntry {
  const full = family === 4 ? 32 : 128;
  const address = formatAddress(bytes);
  return { family, bytes, prefix, text: prefix === full ? address : `${address}/${prefix}` };
}

function clearHostBits(bytes: Uint8Array, prefix: number): Uint8Array {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return bytes;
}

function randomBytes(n: number, rng: Rng): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = rng.int(0, 255);
  return bytes;
}
