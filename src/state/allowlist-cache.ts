/**
 * Clients that passed (postscreen's PASS OLD, DESIGN §2): one that sat the
 * first-contact hold out quietly is remembered here and skips the hold and the
 * costly checks until its entry expires. Keyed by exact address, IPv4-mapped
 * folded and canonical (client-group.ts), so a dual-stack listener's
 * `::ffff:192.0.2.1` and a plain `192.0.2.1` are one client.
 */
import { ms } from './duration.js';
import { LRUCache } from 'lru-cache';

import type { Ip } from '../core/ip.js';
import { addressKey } from './client-group.js';
import { allowlistCacheEntries, allowlistCacheHit, allowlistCacheMiss, stateEvictionsTotal } from './metrics.js';

export interface AllowlistEntry {
  /** Why the client was allowlisted ("sat out the first-contact hold"). */
  readonly reason: string;
  /** When, in milliseconds of the store's clock (by default the Unix epoch, as `Date.now()`). */
  readonly since: number;
}

export interface AllowlistCacheOptions {
  /** Seconds an entry lives (policy `allowlistCache.ttl`). */
  readonly ttl: number;
  /** Most entries (policy `allowlistCache.maxEntries`); the least recently seen client goes first. */
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

  /** Whether `address` (text, or already parsed) passed before and has not expired; counts a hit or a miss. */
  has(address: string | Ip): boolean {
    return this.hasKey(addressKey(address));
  }

  /** `has` for a key already in canonical form (client-group.ts `addressKey`), as the engine computes it once per client. */
  hasKey(key: string): boolean {
    const hit = this.#cache.get(key) !== undefined;
    (hit ? allowlistCacheHit : allowlistCacheMiss).inc();
    return hit;
  }

  /** The entry for `address` without counting a lookup or refreshing its place (for `explain` and logs). */
  peek(address: string): AllowlistEntry | undefined {
    return this.#cache.peek(addressKey(address));
  }

  /** `ttl` (seconds) for this entry alone; default the cache's. */
  add(address: string, reason: string, ttl?: number): void {
    const entry = { reason, since: this.#now() };
    if (ttl === undefined) this.#cache.set(addressKey(address), entry);
    else this.#cache.set(addressKey(address), entry, { ttl: ms(ttl) });
    allowlistCacheEntries.set(this.#cache.size);
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
   * Each entry keeps its age: it expires `ttl` after it was added, under the
   * new TTL; entries already older than that are dropped.
   */
  resize(ttl: number, maxEntries: number): void {
    const newTtl = ms(ttl);
    if (newTtl === this.#ttlMs && maxEntries === this.#cache.max) return;
    const next = this.#create(newTtl, maxEntries);
    const now = this.#now();
    for (const key of this.#cache.rkeys()) {
      // peek: no recency change, and undefined for an entry already expired.
      const entry = this.#cache.peek(key);
      if (entry === undefined || now - entry.since >= newTtl) continue;
      next.set(key, entry, { start: entry.since });
    }
    this.#cache = next;
    this.#ttlMs = newTtl;
    allowlistCacheEntries.set(next.size);
  }

  #create(ttl: number, max: number): LRUCache<string, AllowlistEntry> {
    const cache: LRUCache<string, AllowlistEntry> = new LRUCache<string, AllowlistEntry>({
      max: Math.max(1, Math.floor(max)),
      ttl,
      // Exact expiry, and the only way a test's clock is honoured (NOTES.md).
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

