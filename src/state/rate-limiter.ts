/**
 * Per-group connection counters for the rate check (issue 3): sessions open at
 * once and sessions opened in the last minute, per client group (see
 * client-group.ts). In memory and bounded both ways (DESIGN §4.5): at most
 * `maxGroups` groups (an LRU: under a spray of addresses the least recently
 * seen group is forgotten), and per group a fixed ring of counters instead of
 * one timestamp per connection.
 *
 * The minute is a ring of BUCKETS buckets of BUCKET_MS each: the count is the
 * current, partial bucket plus the eleven before it, so it covers the last
 * 55 to 60 s. It errs towards counting too few, never too many, so a big
 * sender is not punished for connections older than a minute.
 */
import { LRUCache } from 'lru-cache';

import { stateEvictionsTotal } from './metrics.js';

const BUCKETS = 12;
const BUCKET_MS = 5_000;
const WINDOW_MS = BUCKETS * BUCKET_MS;

export interface RateSnapshot {
  /** Sessions open now in the group. */
  readonly concurrent: number;
  /** Sessions opened in the last minute in the group (this one included). */
  readonly perMinute: number;
}

export interface RateOpen {
  /** The group's counts with this session included, for `checkRate`. */
  readonly snapshot: RateSnapshot;
  /** Ends this session's share of `concurrent`; calling it again does nothing. */
  readonly release: () => void;
}

export interface RateLimiterOptions {
  /** Most groups remembered; the least recently active is forgotten beyond it. Default 100,000. */
  readonly maxGroups?: number;
  /** Clock in milliseconds (tests inject one); default `performance.now`. */
  readonly now?: () => number;
}

class GroupCounters {
  concurrent = 0;
  /** Sessions opened per bucket; slot = bucket number % BUCKETS. */
  readonly opened = new Uint32Array(BUCKETS);
  /** Absolute bucket number of the newest slot written; older slots are cleared on the way forward. */
  bucket = 0;

  /** Moves the ring to `bucket`, clearing slots that fell out of the minute. */
  advance(bucket: number): void {
    const steps = bucket - this.bucket;
    if (steps <= 0) return;
    if (steps >= BUCKETS) this.opened.fill(0);
    else for (let b = this.bucket + 1; b <= bucket; b++) this.opened[b % BUCKETS] = 0;
    this.bucket = bucket;
  }

  perMinute(): number {
    let sum = 0;
    for (const n of this.opened) sum += n;
    return sum;
  }
}

export class RateLimiter {
  readonly #groups: LRUCache<string, GroupCounters>;
  readonly #now: () => number;

  constructor(options: RateLimiterOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#groups = new LRUCache<string, GroupCounters>({
      max: options.maxGroups ?? 100_000,
      // A group with sessions open has no TTL (see #touch); an idle one is
      // kept for the minute its opens still count in, then forgotten.
      ttl: WINDOW_MS,
      ttlResolution: 0,
      perf: { now: this.#now },
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') stateEvictionsTotal.labels('rate').inc();
      },
    });
  }

  /** Counts a new session in `group`; the counts returned include it. */
  open(group: string): RateOpen {
    const bucket = this.#bucket();
    let counters = this.#groups.get(group);
    if (counters === undefined) {
      counters = new GroupCounters();
      counters.bucket = bucket;
    }
    counters.advance(bucket);
    counters.concurrent++;
    const slot = bucket % BUCKETS;
    counters.opened[slot] = (counters.opened[slot] ?? 0) + 1;
    this.#touch(group, counters);

    const opened = counters;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      opened.concurrent--;
      // An evicted group's counters are detached: nothing left to update.
      if (opened.concurrent === 0 && this.#groups.peek(group) === opened) this.#touch(group, opened);
    };
    return { snapshot: { concurrent: counters.concurrent, perMinute: counters.perMinute() }, release };
  }

  /** Current counts for `group`, without counting a session. */
  snapshot(group: string): RateSnapshot {
    const counters = this.#groups.get(group);
    if (counters === undefined) return { concurrent: 0, perMinute: 0 };
    counters.advance(this.#bucket());
    return { concurrent: counters.concurrent, perMinute: counters.perMinute() };
  }

  /** Groups held (idle ones past their minute included until touched or evicted). */
  get size(): number {
    return this.#groups.size;
  }

  /**
   * (Re)stores a group. While sessions are open it must not expire: a held
   * session can outlast the minute many times over, and forgetting it would
   * let the group open `maxConcurrent` more. TTL 0 is lru-cache's "never".
   */
  #touch(group: string, counters: GroupCounters): void {
    this.#groups.set(group, counters, { ttl: counters.concurrent > 0 ? 0 : WINDOW_MS });
  }

  #bucket(): number {
    return Math.floor(this.#now() / BUCKET_MS);
  }
}
