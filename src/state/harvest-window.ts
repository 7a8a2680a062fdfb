/**
 * Recipients the backend rejected, per client group, within a sliding window
 * (policy `harvest.window`, seconds): a dictionary attack spread over many
 * short sessions, or over neighbouring addresses, still adds up (issue 3).
 *
 * Bounded like the rate limiter (sliding-window.ts): an LRU of at most
 * `maxGroups` groups, each a ring of BUCKETS counters. The count is the
 * current, partial bucket plus the nine before it: the last 90 to 100 % of the
 * window, erring towards too few.
 */
import type { LRUCache } from 'lru-cache';

import { SlidingCount, groupStore } from './sliding-window.js';

const BUCKETS = 10;

export interface HarvestWindowOptions {
  /** Window in seconds (policy `harvest.window`); default 600, and setWindow() on each policy load. */
  readonly window?: number;
  /** Most groups remembered; the least recently active is forgotten beyond it. Default 100,000. */
  readonly maxGroups?: number;
  /** Clock in milliseconds (tests inject one); default `performance.now`. */
  readonly now?: () => number;
}

export class HarvestWindow {
  readonly #groups: LRUCache<string, SlidingCount>;
  readonly #now: () => number;
  #windowMs: number;
  #bucketMs: number;

  constructor(options: HarvestWindowOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#windowMs = windowMs(options.window ?? 600);
    this.#bucketMs = this.#windowMs / BUCKETS;
    this.#groups = groupStore({ store: 'harvest', maxGroups: options.maxGroups, now: this.#now });
  }

  /** The window in seconds. */
  get window(): number {
    return this.#windowMs / 1000;
  }

  /**
   * For a policy reload. A new length re-cuts the buckets, so the counts so
   * far are dropped: a harvest count is a short-term signal, and a reload that
   * changes the window is rare.
   */
  setWindow(seconds: number): void {
    const ms = windowMs(seconds);
    if (ms === this.#windowMs) return;
    this.#windowMs = ms;
    this.#bucketMs = ms / BUCKETS;
    this.#groups.clear();
  }

  /**
   * Counts one more rejected recipient for `group`; returns the group's count
   * within the window, this one included. One per call on purpose: a count
   * argument would be too easy to confuse with the window.
   */
  add(group: string): number {
    const bucket = this.#bucket();
    const ring = this.#groups.get(group) ?? new SlidingCount(BUCKETS, bucket);
    const count = ring.add(bucket);
    // Nothing in the ring outlives the window, so neither does the entry.
    this.#groups.set(group, ring, { ttl: this.#windowMs });
    return count;
  }

  /** The group's rejected recipients within the window. */
  count(group: string): number {
    return this.#groups.get(group)?.count(this.#bucket()) ?? 0;
  }

  /** Groups held (expired ones included until touched or evicted). */
  get size(): number {
    return this.#groups.size;
  }

  #bucket(): number {
    return Math.floor(this.#now() / this.#bucketMs);
  }
}

/** Buckets per window, for the Redis store, which must count exactly as this one (redis-scripts.ts). */
export const HARVEST_BUCKETS = BUCKETS;

/** Whole milliseconds, at least one per bucket, so a bucket never has length 0. */
export function windowMs(seconds: number): number {
  return Math.max(BUCKETS, Math.round(seconds * 1000));
}
