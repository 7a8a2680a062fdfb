/**
 * Clients that passed (postscreen's PASS OLD, docs/design.md §2): one that sat the
 * first-contact hold out quietly is remembered here and skips the hold and the
 * costly checks until its entry expires. Keyed by exact address, IPv4-mapped
 * folded and canonical (client-group.ts), so a dual-stack listener's
 * `::ffff:192.0.2.1` and a plain `192.0.2.1` are one client; a survivor's
 * network (issue 11: a pool retries from a neighbour) is an entry of its own
 * under `networkKey`, in the same bounded cache.
 *
 * The cache only remembers: whether an entry is worth a pass yet (a retry
 * after the pause) is the policy's decision, which also counts the lookups
 * (smtp_tarpit_allowlist_cache_total).
 */
import { ms } from './duration.js';
import { LRUCache } from 'lru-cache';

import type { Ip } from '../core/ip.js';
import { addressKey } from './client-group.js';
import { allowlistCacheEntries, stateEvictionsTotal } from './metrics.js';
import type { AllowlistMark, AllowlistMarks } from './store.js';

export interface AllowlistEntry extends AllowlistMark {
  /** Why the client was allowlisted ("sat out the first-contact hold"). */
  readonly reason: string;
  /** The deferred message's fingerprint (store.ts `AllowlistWrite.message`). */
  readonly message?: string;
}

const NETWORK_PREFIX = 'net ';

/** A network's key in the cache: never an address key, which has no space. */
export function networkKey(network: string): string {
  return `${NETWORK_PREFIX}${network}`;
}

const NO_MARKS: AllowlistMarks = Object.freeze({ address: undefined, network: undefined });

/** The marks `connect` answers with, in one shape whichever store found them (reasons stay in the store). */
export function allowlistMarks(address: AllowlistMark | undefined, network: AllowlistMark | undefined): AllowlistMarks {
  if (address === undefined && network === undefined) return NO_MARKS;
  return { address: address && { since: address.since, deferred: address.deferred }, network: network && { since: network.since, deferred: network.deferred } };
}

export interface AllowlistCacheOptions {
  /** Seconds an entry lives unless `add` says otherwise (policy `allowlistCache.ttl`). */
  readonly ttl: number;
  /** Most entries, addresses and networks together (policy `allowlistCache.maxEntries`); the least recently seen go first. */
  readonly maxEntries: number;
  /**
   * Clock in milliseconds (tests inject one). Default `Date.now`, not a
   * monotonic clock: `since` is shown to admins, and a store shared by a fleet
   * (issue 6) needs one time base; a clock step is noise against a TTL of days.
   */
  readonly now?: () => number;
}

/** The memory store's allowlist cache (memory-store.ts); a Redis store keeps the same entries as keys with a TTL. */
export class AllowlistCache {
  #cache: LRUCache<string, AllowlistEntry>;
  #ttlMs: number;
  readonly #now: () => number;

  constructor(options: AllowlistCacheOptions) {
    this.#now = options.now ?? Date.now;
    this.#ttlMs = ms(options.ttl);
    this.#cache = this.#create(this.#ttlMs, options.maxEntries);
    allowlistCacheEntries.set(0);
  }

  /** The unexpired entry under `key` (an address key, or `networkKey(…)`), refreshing its recency. */
  get(key: string): AllowlistEntry | undefined {
    return this.#cache.get(key);
  }

  /** The entry for `address` (text or parsed; a `networkKey`, not an address, is its own key) without refreshing its place (for `explain` and tests). */
  peek(address: string | Ip): AllowlistEntry | undefined {
    return this.#cache.peek(addressKey(address));
  }

  /**
   * Remembers `key` for `ttl` seconds (default the cache's), unless an
   * unexpired entry is there already: that one keeps its time, unless both
   * name the same deferred message, which restarts it (store.ts says why).
   * `restartOnly`: never add, only restart.
   */
  add(key: string, entry: AllowlistEntry, ttl?: number, restartOnly = false): 'added' | 'kept' | 'restarted' {
    const old = this.#cache.peek(key);
    const outcome = old === undefined ? (restartOnly ? 'kept' : 'added') : old.message !== undefined && old.message === entry.message ? 'restarted' : 'kept';
    if (outcome === 'kept') return outcome;
    if (ttl === undefined) this.#cache.set(key, entry);
    else this.#cache.set(key, entry, { ttl: ms(ttl) });
    allowlistCacheEntries.set(this.#cache.size);
    return outcome;
  }

  /** Forgets `key`; true when there was an unexpired entry. */
  delete(key: string): boolean {
    const had = this.#cache.peek(key) !== undefined;
    this.#cache.delete(key);
    allowlistCacheEntries.set(this.#cache.size);
    return had;
  }

  get size(): number {
    return this.#cache.size;
  }

  /** The TTL in seconds. */
  get ttl(): number {
    return this.#ttlMs / 1000;
  }

  get maxEntries(): number {
    return this.#cache.max;
  }

  /**
   * New TTL and size from a reloaded policy. lru-cache fixes `max` at
   * construction, so the entries move to a new cache, least recently used
   * first so recency survives and a smaller cache keeps the most recent ones.
   * Each address entry keeps its age: it expires `ttl` after it was added,
   * under the new TTL; entries already older than that are dropped.
   */
  resize(ttl: number, maxEntries: number): void {
    const newTtl = ms(ttl);
    if (newTtl === this.#ttlMs && maxEntries === this.#cache.max) return;
    const next = this.#create(newTtl, maxEntries);
    const now = this.#now();
    for (const key of this.#cache.rkeys()) {
      // peek: no recency change, and undefined for an entry already expired.
      const entry = this.#cache.peek(key);
      if (entry === undefined) continue;
      // A network's entry has a TTL of its own (allowlistCache.network.ttl): it keeps what it has left.
      if (key.startsWith(NETWORK_PREFIX)) next.set(key, entry, { ttl: Math.max(1, this.#cache.getRemainingTTL(key)) });
      else if (now - entry.since < newTtl) next.set(key, entry, { start: entry.since });
    }
    this.#cache = next;
    this.#ttlMs = newTtl;
    allowlistCacheEntries.set(next.size);
  }

  #create(ttl: number, max: number): LRUCache<string, AllowlistEntry> {
    const cache: LRUCache<string, AllowlistEntry> = new LRUCache<string, AllowlistEntry>({
      max: Math.max(1, Math.floor(max)),
      ttl,
      // Exact expiry, and the only way a test's clock is honoured (docs/platform-notes.md).
      ttlResolution: 0,
      perf: { now: this.#now },
      // After removal, so `size` is already the new one; a cache being
      // filled by resize() is not yet the live one and reports at the end.
      disposeAfter: (_value, _key, reason) => {
        if (reason === 'evict') stateEvictionsTotal.labels('allowlist').inc();
        if (this.#cache === cache) allowlistCacheEntries.set(cache.size);
      },
    });
    return cache;
  }
}

