/**
 * Per-group reputation in one process's memory (issue 6, karma-style): decayed
 * counts of bad and good sessions. Stored as `{bad, good, at}` and decayed on
 * read, value × 2^(−(now − at) / halfLife), so nothing ticks in the
 * background and a group costs one small object. The Redis store keeps the
 * same three numbers in a hash and decays them the same way.
 */
import { ms } from './duration.js';
import { LRUCache } from 'lru-cache';

import { stateEvictionsTotal } from './metrics.js';
import type { ReputationSnapshot, SessionOutcome } from './store.js';

/**
 * An entry is forgotten this many half-lives after its last write: by then
 * its counts are below 1/1000 of what they were, nothing a weight can see.
 */
export const REPUTATION_KEEP_HALF_LIVES = 10;

export const NO_REPUTATION: ReputationSnapshot = Object.freeze({ bad: 0, good: 0 });

interface Entry {
  bad: number;
  good: number;
  at: number;
}

/** `value` decayed from `at` to `now` with `halfLifeMs`; a clock that went back does not grow it. */
export function decay(value: number, at: number, now: number, halfLifeMs: number): number {
  const age = now - at;
  return age <= 0 ? value : value * Math.pow(2, -age / halfLifeMs);
}

export interface MemoryReputationOptions {
  /** Most groups remembered; default 100,000. */
  readonly maxEntries?: number;
  /** Seconds for a count to halve; default 86,400 (a day). */
  readonly halfLife?: number;
  /** The store's clock (ms since the epoch), which the cache's TTLs follow. */
  readonly now: () => number;
}

export class MemoryReputation {
  readonly #groups: LRUCache<string, Entry>;
  readonly #now: () => number;
  #halfLifeMs: number;

  constructor(options: MemoryReputationOptions) {
    this.#now = options.now;
    this.#halfLifeMs = ms(options.halfLife ?? 86_400);
    this.#groups = new LRUCache<string, Entry>({
      max: Math.max(1, Math.floor(options.maxEntries ?? 100_000)),
      ttl: 1,
      ttlResolution: 0,
      perf: { now: options.now },
      dispose: (_value, _key, reason) => {
        if (reason === 'evict') stateEvictionsTotal.labels('reputation').inc();
      },
    });
  }

  /** Seconds. A new half-life applies to every count from now on, stored ones included (they are decayed on read). */
  get halfLife(): number {
    return this.#halfLifeMs / 1000;
  }

  set halfLife(seconds: number) {
    this.#halfLifeMs = ms(seconds);
  }

  get(group: string): ReputationSnapshot {
    const entry = this.#groups.get(group);
    if (entry === undefined) return NO_REPUTATION;
    const now = this.#now();
    return { bad: decay(entry.bad, entry.at, now, this.#halfLifeMs), good: decay(entry.good, entry.at, now, this.#halfLifeMs) };
  }

  /** Adds one session's outcome; `neutral` changes nothing. */
  record(group: string, outcome: SessionOutcome): void {
    if (outcome === 'neutral') return;
    const now = this.#now();
    const entry = this.#groups.get(group);
    const bad = entry === undefined ? 0 : decay(entry.bad, entry.at, now, this.#halfLifeMs);
    const good = entry === undefined ? 0 : decay(entry.good, entry.at, now, this.#halfLifeMs);
    const next: Entry = outcome === 'bad' ? { bad: bad + 1, good, at: now } : { bad, good: good + 1, at: now };
    this.#groups.set(group, next, { ttl: this.#halfLifeMs * REPUTATION_KEEP_HALF_LIVES });
  }

  get size(): number {
    return this.#groups.size;
  }
}

