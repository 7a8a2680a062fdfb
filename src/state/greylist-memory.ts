/**
 * Greylisting in one process's memory (issue 6). Two bounded LRUs:
 * triplets waiting for their retry (first-seen time) and networks that passed
 * (auto-allowlisted, time they passed). The decision rules live here once and
 * the Redis store's Lua script (redis-scripts.ts) follows them step by step;
 * the shared contract test holds both to the same answers.
 */
import { ms } from './duration.js';
import { LRUCache } from 'lru-cache';

import { stateEvictionsTotal } from './metrics.js';
import { retriedTooSoon } from './retry-delay.js';
import type { GreylistKey, GreylistOutcome, GreylistSettings } from './store.js';

/**
 * A pending triplet is kept this many pending expiries after it was first
 * seen: long enough to tell a late retry (`expired`) from a stranger (`new`),
 * short enough that a bot's one-off triplets do not pile up.
 */
export const PENDING_KEEP_FACTOR = 2;

export interface GreylistPeek {
  readonly state: 'unknown' | 'pending' | 'passed';
  readonly since?: number;
}

export interface MemoryGreylistOptions {
  /** Most triplets and most passed networks remembered, each; default 100,000. */
  readonly maxEntries?: number;
  /** The store's clock (ms since the epoch), which the caches' TTLs follow. */
  readonly now: () => number;
}

/**
 * The triplet's key: the sender's length first, so no choice of addresses
 * (a `|` is legal in a local part) makes two triplets one.
 */
export function tripletKey(key: GreylistKey): string {
  return `${key.network}|${key.sender.length}|${key.sender}|${key.recipient}`;
}

export class MemoryGreylist {
  readonly #pending: LRUCache<string, number>;
  readonly #passed: LRUCache<string, number>;
  readonly #now: () => number;

  constructor(options: MemoryGreylistOptions) {
    this.#now = options.now;
    const max = options.maxEntries ?? 100_000;
    this.#pending = cache(max, options.now);
    this.#passed = cache(max, options.now);
  }

  decide(key: GreylistKey, settings: GreylistSettings): GreylistOutcome {
    const now = this.#now();
    const passedMs = ms(settings.passedExpiry);
    const since = this.#passed.get(key.network);
    if (since !== undefined) {
      // A network that keeps sending stays allowlisted (spamlogd refreshes too); it keeps the time it first passed.
      this.#passed.set(key.network, since, { ttl: passedMs });
      return 'allowlisted';
    }
    const triplet = tripletKey(key);
    const pendingMs = ms(settings.pendingExpiry);
    const first = this.#pending.get(triplet);
    if (first === undefined) {
      this.#pending.set(triplet, now, { ttl: pendingMs * PENDING_KEEP_FACTOR });
      return 'new';
    }
    if (retriedTooSoon(first, now, settings.minDelay)) return 'early';
    if (now - first >= pendingMs) {
      this.#pending.set(triplet, now, { ttl: pendingMs * PENDING_KEEP_FACTOR });
      return 'expired';
    }
    this.#pending.delete(triplet);
    this.#passed.set(key.network, now, { ttl: passedMs });
    return 'passed';
  }

  peek(key: GreylistKey, settings: GreylistSettings): GreylistPeek {
    const since = this.#passed.peek(key.network);
    if (since !== undefined) return { state: 'passed', since };
    const first = this.#pending.peek(tripletKey(key));
    if (first !== undefined && this.#now() - first < ms(settings.pendingExpiry)) return { state: 'pending', since: first };
    return { state: 'unknown' };
  }

  get size(): number {
    return this.#pending.size + this.#passed.size;
  }
}

function cache(max: number, now: () => number): LRUCache<string, number> {
  return new LRUCache<string, number>({
    max: Math.max(1, Math.floor(max)),
    // Every set() gives its own TTL; this is only lru-cache's requirement for per-entry TTLs.
    ttl: 1,
    // Exact expiry, and the only way a test's clock is honoured (docs/platform-notes.md).
    ttlResolution: 0,
    perf: { now },
    dispose: (_value, _key, reason) => {
      if (reason === 'evict') stateEvictionsTotal.labels('greylist').inc();
    },
  });
}

