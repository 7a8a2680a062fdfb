/**
 * What the rate and harvest counters share (issue 3): per client group, a
 * count over a sliding window, the groups in an LRU. Bounded both ways
 * (docs/design.md §4.5): at most `maxGroups` groups (under a spray of addresses the
 * least recently active one is forgotten), and per group a fixed ring of
 * counters instead of one timestamp per event, so a group costs the same
 * whether it counts 5 events or 5 million.
 */
import { LRUCache } from 'lru-cache';

import { stateEvictionsTotal } from './metrics.js';

/**
 * A ring of per-bucket counts. Callers pass the absolute bucket number,
 * `Math.floor(now / bucketMs)`; the ring covers the current, partial bucket
 * and the `buckets - 1` before it, so it errs towards counting too few, never
 * too many (a client is not punished for events older than the window).
 */
export class SlidingCount {
  /** A plain array of small integers: about half the heap of a Uint32Array and its ArrayBuffer, for one per client group. */
  readonly #counts: number[];
  /** Absolute bucket number of the newest slot written; older slots are cleared on the way forward. */
  #bucket: number;

  constructor(buckets: number, bucket: number) {
    this.#counts = new Array<number>(buckets).fill(0);
    this.#bucket = bucket;
  }

  /** Counts one event in `bucket`; returns the count within the window, this one included. */
  add(bucket: number): number {
    this.#advance(bucket);
    const slot = bucket % this.#counts.length;
    this.#counts[slot] = (this.#counts[slot] ?? 0) + 1;
    return this.#sum();
  }

  /** The count within the window that ends in `bucket`. */
  count(bucket: number): number {
    this.#advance(bucket);
    return this.#sum();
  }

  /** Moves the ring to `bucket`, clearing the slots that fell out of the window. */
  #advance(bucket: number): void {
    const steps = bucket - this.#bucket;
    if (steps <= 0) return;
    const n = this.#counts.length;
    if (steps >= n) this.#counts.fill(0);
    else for (let b = this.#bucket + 1; b <= bucket; b++) this.#counts[b % n] = 0;
    this.#bucket = bucket;
  }

  #sum(): number {
    let total = 0;
    for (const n of this.#counts) total += n;
    return total;
  }
}

export interface GroupStoreOptions {
  /** The `store` label of smtp_tarpit_state_evictions_total. */
  readonly store: 'rate' | 'harvest';
  /** Most groups remembered; the least recently active is forgotten beyond it. Default 100,000. */
  readonly maxGroups?: number;
  /** Clock in milliseconds, also the cache's, so a test's clock expires entries. */
  readonly now: () => number;
}

/** The LRU of groups, counting the ones pushed out before they expired; each `set()` gives its entry's TTL. */
export function groupStore<V extends object>(options: GroupStoreOptions): LRUCache<string, V> {
  return new LRUCache<string, V>({
    max: options.maxGroups ?? 100_000,
    // Exact expiry, and the only way a test's clock is honoured (docs/platform-notes.md).
    ttlResolution: 0,
    perf: { now: options.now },
    dispose: (_value, _key, reason) => {
      if (reason === 'evict') stateEvictionsTotal.labels(options.store).inc();
    },
  });
}
