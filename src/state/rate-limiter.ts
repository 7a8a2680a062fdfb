/**
 * Per-group connection counters for the rate check (issue 3): sessions open at
 * once and sessions opened in the last minute, per client group (see
 * client-group.ts). In memory and bounded both ways (sliding-window.ts): an
 * LRU of at most `maxGroups` groups, and per group a ring of counters instead
 * of one timestamp per connection.
 *
 * The minute is a ring of BUCKETS buckets of BUCKET_MS each: the count is the
 * current, partial bucket plus the eleven before it, so it covers the last
 * 55 to 60 s. It errs towards counting too few, never too many, so a big
 * sender is not punished for connections older than a minute.
 */
import type { LRUCache } from 'lru-cache';
import type { RateSlot, RateSnapshot } from './store.js';

import { SlidingCount, groupStore } from './sliding-window.js';

const BUCKETS = 12;
const BUCKET_MS = 5_000;
const WINDOW_MS = BUCKETS * BUCKET_MS;

/** The minute's cut, for the Redis store, which must count exactly as this one (redis-scripts.ts). */
export const RATE_WINDOW = { buckets: BUCKETS, bucketMs: BUCKET_MS, windowMs: WINDOW_MS } as const;

export type { RateSnapshot } from './store.js';

/** A counted session: the store's slot (its `release` ends this session's share of `concurrent`, once) with the group's counts including it, for `checkRate`. */
export type RateOpen = RateSlot & { readonly snapshot: RateSnapshot };

export interface RateLimiterOptions {
  /** Most groups remembered; the least recently active is forgotten beyond it. Default 100,000. */
  readonly maxGroups?: number;
  /** Clock in milliseconds (tests inject one); default `performance.now`. */
  readonly now?: () => number;
}

class GroupCounters {
  concurrent = 0;
  /** Sessions opened in the last minute. */
  readonly opened: SlidingCount;

  constructor(
    bucket: number,
    /** The group's key and its store: kept here, once per group, so a session's slot needs neither. */
    readonly key: string,
    readonly groups: LRUCache<string, GroupCounters>,
  ) {
    this.opened = new SlidingCount(BUCKETS, bucket);
  }

  /**
   * (Re)stores the group. While sessions are open it must not expire: a held
   * session can outlast the minute many times over, and forgetting it would
   * let the group open `maxConcurrent` more. TTL 0 is lru-cache's "never".
   */
  touch(): void {
    this.groups.set(this.key, this, { ttl: this.concurrent > 0 ? 0 : WINDOW_MS });
  }

  leave(): void {
    this.concurrent--;
    // An evicted group's counters are detached: nothing left to update.
    if (this.concurrent === 0 && this.groups.peek(this.key) === this) this.touch();
  }
}

/**
 * One session's place in its group. A held session keeps it for its whole
 * hold, tens of thousands at once: three fields, no closure.
 */
class CountedSlot implements RateOpen {
  #counters: GroupCounters | undefined;
  readonly #concurrent: number;
  readonly #perMinute: number;

  constructor(counters: GroupCounters, perMinute: number) {
    this.#counters = counters;
    this.#concurrent = counters.concurrent;
    this.#perMinute = perMinute;
  }

  get snapshot(): RateSnapshot {
    return { concurrent: this.#concurrent, perMinute: this.#perMinute };
  }

  release(): void {
    const counters = this.#counters;
    this.#counters = undefined;
    counters?.leave();
  }
}

export class RateLimiter {
  readonly #groups: LRUCache<string, GroupCounters>;
  readonly #now: () => number;

  constructor(options: RateLimiterOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    // A group with sessions open has no TTL; an idle one is kept for the
    // minute its opens still count in, then forgotten (see GroupCounters.touch).
    this.#groups = groupStore({ store: 'rate', maxGroups: options.maxGroups, now: this.#now });
  }

  /** Counts a new session in `group`; the counts returned include it. */
  open(group: string): RateOpen {
    const bucket = this.#bucket();
    const counters = this.#groups.get(group) ?? new GroupCounters(bucket, group, this.#groups);
    const perMinute = counters.opened.add(bucket);
    counters.concurrent++;
    counters.touch();
    return new CountedSlot(counters, perMinute);
  }

  /** Current counts for `group`, without counting a session. */
  snapshot(group: string): RateSnapshot {
    const counters = this.#groups.get(group);
    if (counters === undefined) return { concurrent: 0, perMinute: 0 };
    return { concurrent: counters.concurrent, perMinute: counters.opened.count(this.#bucket()) };
  }

  /** Groups held (idle ones past their minute included until touched or evicted). */
  get size(): number {
    return this.#groups.size;
  }

  #bucket(): number {
    return Math.floor(this.#now() / BUCKET_MS);
  }
}
