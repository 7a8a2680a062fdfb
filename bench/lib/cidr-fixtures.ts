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
 *
 * Addresses are src/core/ip.ts's `Ip` and are written with its `formatIp`,
 * the text a socket would report and the engine keys on.
 */
import { formatIp, type Ip, type IpFamily } from '../../src/core/ip.js';

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
  /** The network, host bits cleared. */
  readonly ip: Ip;
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
      out.push(entry(clearHostBits(randomAddress('ipv6', rng, space), prefix), prefix));
    } else {
      const prefix = V4_PREFIXES[v4++ % V4_PREFIXES.length] as number;
      out.push(entry(clearHostBits(randomAddress('ipv4', rng, space), prefix), prefix));
    }
  }
  return out;
}

/** A random address inside `e` (host bits random). */
export function addressInside(e: GenEntry, rng: Rng): Ip {
  const network = e.ip.bytes;
  const bytes = randomBytes(network.length, rng);
  for (let bit = 0; bit < e.prefix; bit++) {
    const mask = 0x80 >> (bit & 7);
    const i = bit >> 3;
    bytes[i] = ((bytes[i] ?? 0) & ~mask) | ((network[i] ?? 0) & mask);
  }
  return { family: e.ip.family, bytes };
}

/** A random address of `family` in `space`. */
export function randomAddress(family: IpFamily, rng: Rng, space: Space): Ip {
  const bytes = randomBytes(family === 'ipv4' ? 4 : 16, rng);
  if (family === 'ipv4') {
    bytes[0] = rng.int(space.v4FirstOctet[0], space.v4FirstOctet[1]);
  } else {
    const group = rng.int(space.v6FirstGroup[0], space.v6FirstGroup[1]);
    bytes[0] = group >> 8;
    bytes[1] = group & 0xff;
  }
  return { family, bytes };
}

/** The group a rate limiter counts the address in (/24, /64), as a string key. */
export function groupKey(ip: Ip): string {
  return Array.from(ip.bytes.subarray(0, ip.family === 'ipv4' ? 3 : 8)).join('.');
}

function entry(ip: Ip, prefix: number): GenEntry {
  const full = ip.family === 'ipv4' ? 32 : 128;
  const address = formatIp(ip);
  return { ip, prefix, text: prefix === full ? address : `${address}/${prefix}` };
}

/** `ip` itself, host bits past `prefix` cleared. */
function clearHostBits(ip: Ip, prefix: number): Ip {
  const { bytes } = ip;
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    const i = bit >> 3;
    bytes[i] = (bytes[i] ?? 0) & ~(0x80 >> (bit & 7));
  }
  return ip;
}

function randomBytes(n: number, rng: Rng): Uint8Array {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i++) bytes[i] = rng.int(0, 255);
  return bytes;
}
