/**
 * The `redis` state store (issue 6): what a fleet of MX hosts learns, shared,
 * so a bot that retries on another MX meets the same memory.
 *
 * One connection per store and one store per process (never one per SMTP
 * session: Haraka's karma opened a client per connection and its users hit
 * Redis' client limit at a few thousand sessions). Each operation is one Lua
 * script (redis-scripts.ts), so counts never race and a clean session costs
 * two round trips: `connect`, then `finish` with the session's slot.
 *
 * Mail flow first: no call rejects and none waits longer than `timeout`.
 * With the offline queue off, a call while Redis is unreachable fails at
 * once; one in flight when it goes fails at the timeout. Either way a local
 * MemoryStore answers, the fallback is counted, the outage is logged once and
 * `health()` says degraded. ioredis reconnects with a capped backoff; once
 * Redis answers again it is used again. What was learnt locally meanwhile
 * (allowlisted clients, greylisting triplets, counts) stays in this process:
 * merging it back would need a write per entry at the moment Redis is
 * busiest, for state that is either short-lived or learnt again.
 */
import { hostname } from 'node:os';
import { Redis } from 'ioredis';

import type { Logger } from '../metrics/logger.js';
import { HARVEST_BUCKETS, windowMs } from './harvest-window.js';
import { allowlistMarks } from './allowlist-cache.js';
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
import { ms } from './duration.js';
import { PENDING_KEEP_FACTOR, tripletKey, type GreylistPeek } from './greylist-memory.js';
import {
  greylistOutcomes,
  storeFallbacksTotal,
  storeOperation,
  storeOperationSeconds,
  storeUp,
  type StoreOperation,
} from './metrics.js';
import { RATE_WINDOW } from './rate-limiter.js';
import { retryDelayMs } from './retry-delay.js';
import { defineScripts, type StoreScripts } from './redis-scripts.js';
import { NO_REPUTATION, REPUTATION_KEEP_HALF_LIVES, decay } from './reputation-memory.js';
import type {
  AllowlistMark,
  AllowlistOutcome,
  AllowlistWrite,
  ConnectQuery,
  ConnectState,
  GreylistKey,
  GreylistOutcome,
  GreylistSettings,
  RateSlot,
  ReputationSnapshot,
  SessionOutcome,
  StateStore,
  StoreHealth,
  StoreSettings,
} from './store.js';

/** What the store logs: an outage once when it starts, once when it ends. */
export type StoreLogger = Pick<Logger, 'warn' | 'info'>;

export interface RedisStoreOptions extends MemoryStoreOptions {
  /** `redis://[:password@]HOST:PORT[/DB]` (`rediss://` for TLS). */
  readonly url: string;
  /** Put before every key, so an operator can see and flush ours; default `smtp-tarpit:`. */
  readonly prefix?: string;
  /** Milliseconds a call may wait for Redis before the local store answers; default 100. */
  readonly timeout?: number;
  /**
   * Seconds an open session counts in its group's concurrency unless released
   * first; default 3,600. Each session's token carries its own expiry, so a
   * session never released (a timed-out call that still ran, a release lost
   * in an outage, a crashed process) stops counting after this long, however
   * busy its group stays.
   */
  readonly concurrencyTtl?: number;
  /** Reconnect backoff, ms: first wait, doubled per attempt up to the cap; default 100 and 5,000. */
  readonly backoff?: { readonly initial: number; readonly max: number };
  readonly logger?: StoreLogger;
  /** The connection's name in Redis' CLIENT LIST; default `smtp-tarpit`. */
  readonly connectionName?: string;
}

const GREYLIST_OUTCOMES: ReadonlySet<string> = new Set<GreylistOutcome>(['new', 'early', 'passed', 'allowlisted', 'expired']);

/**
 * A session's place in a Redis group's concurrency: its token in the group's
 * open-sessions set. `release()` alone costs a round trip; `finish(…, slot)`
 * takes it into its own write instead.
 */
class RedisSlot implements RateSlot {
  #place: { readonly key: string; readonly token: string } | undefined;
  readonly #release: (key: string, token: string) => void;

  constructor(key: string, token: string, release: (key: string, token: string) => void) {
    this.#place = { key, token };
    this.#release = release;
  }

  release(): void {
    const place = this.take();
    if (place !== undefined) this.#release(place.key, place.token);
  }

  /** The set and token to release, once: later calls (and `release()`) get nothing. */
  take(): { readonly key: string; readonly token: string } | undefined {
    const place = this.#place;
    this.#place = undefined;
    return place;
  }
}

export class RedisStore implements StateStore {
  readonly kind = 'redis' as const;

  readonly #client: Redis;
  readonly #scripts: StoreScripts;
  readonly #local: MemoryStore;
  readonly #prefix: string;
  readonly #logger: StoreLogger | undefined;
  readonly #busyTtlMs: number;
  readonly #releaseKey: (key: string, token: string) => void;
  /** Session tokens: unique in the fleet (host, process, counter), so one process's release never removes another's session. */
  readonly #tokenPrefix = `${hostname()}:${process.pid}:${Date.now().toString(36)}:`;
  #tokens = 0;
  #halfLifeMs: number;
  /** Why Redis is not being used right now; undefined while it answers. */
  #outage: string | undefined;
  #closed = false;

  constructor(options: RedisStoreOptions) {
    this.#local = new MemoryStore({ ...options, countOperations: false });
    this.#prefix = options.prefix ?? 'smtp-tarpit:';
    this.#logger = options.logger;
    this.#busyTtlMs = ms(options.concurrencyTtl ?? 3_600);
    this.#halfLifeMs = ms(options.reputationHalfLife ?? 86_400);
    const backoff = options.backoff ?? { initial: 100, max: 5_000 };
    this.#client = new Redis(options.url, {
      connectionName: options.connectionName ?? 'smtp-tarpit',
      // Fail at once while disconnected instead of queueing: the session is waiting.
      enableOfflineQueue: false,
      commandTimeout: options.timeout ?? 100,
      connectTimeout: 2_000,
      // A call that failed was answered locally; resending it after a reconnect would count it twice.
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (attempt) => Math.min(backoff.initial * 2 ** Math.min(attempt - 1, 20), backoff.max),
    });
    this.#scripts = defineScripts(this.#client);
    this.#releaseKey = (key, token) => this.#release(key, token);
    this.#outage = 'connecting';
    storeUp.set({ store: 'redis' }, 0);
    this.#client.on('ready', () => this.#recover());
    this.#client.on('error', (err: Error) => this.#fail(`redis error: ${err.message}`));
    this.#client.on('close', () => this.#fail('connection to redis closed'));
  }

  configure(settings: StoreSettings): void {
    this.#local.configure(settings);
    if (settings.reputationHalfLife !== undefined) this.#halfLifeMs = ms(settings.reputationHalfLife);
  }

  connect(query: ConnectQuery, now: number): Promise<ConnectState> {
    const open = this.#key('open:', query.group);
    const token = query.count ? `${this.#tokenPrefix}${(++this.#tokens).toString(36)}` : '';
    const network = query.network;
    const call = (): Promise<ConnectState> =>
      this.#scripts
        .tarpitConnect(
          this.#key('allow:', query.client),
          this.#key('rate:', query.group),
          this.#key('rep:', query.group),
          open,
          // A key is always passed (Redis cluster routing wants every key named); it is read only when asked.
          this.#key('allow:net:', network ?? ''),
          query.count ? '1' : '0',
          Math.floor(now / RATE_WINDOW.bucketMs),
          RATE_WINDOW.buckets,
          RATE_WINDOW.windowMs,
          this.#busyTtlMs,
          token,
          now,
          network === undefined ? '0' : '1',
        )
        .then(([address, concurrent, perMinute, bad, good, at, net]) => {
          const allowlist = allowlistMarks(parseMark(address), parseMark(net));
          const rate = { concurrent, perMinute };
          const reputation = this.#reputation(bad, good, at, now);
          if (!query.count) return { allowlist, rate, reputation };
          return { allowlist, rate, reputation, slot: new RedisSlot(open, token, this.#releaseKey) };
        });
    return this.#run('connect', call, () => this.#local.connect(query, now));
  }

  finish(group: string, outcome: SessionOutcome, now: number, slot?: RateSlot): void {
    let place: { readonly key: string; readonly token: string } | undefined;
    if (slot instanceof RedisSlot) place = slot.take();
    // A slot the local store handed out (during an outage) goes back to it.
    else slot?.release();
    if (outcome === 'neutral' && place === undefined) return;
    const reputationKey = this.#key('rep:', group);
    const call = (): Promise<number> =>
      this.#scripts.tarpitFinish(
        reputationKey,
        place?.key ?? reputationKey,
        outcome,
        now,
        this.#halfLifeMs,
        this.#halfLifeMs * REPUTATION_KEEP_HALF_LIVES,
        place === undefined ? '0' : '1',
        place?.token ?? '',
      );
    // The reputation goes to the local store; a Redis slot that cannot be released there drops out of its set after concurrencyTtl.
    void this.#run('finish', call, () => {
      this.#local.finish(group, outcome, now);
      return 0;
    });
  }

  allowlist(write: AllowlistWrite, now: number): Promise<AllowlistOutcome> {
    const net = write.network;
    const call = (): Promise<AllowlistOutcome> =>
      this.#scripts
        .tarpitAllowlist(
          this.#key('allow:', write.client),
          this.#key('allow:net:', net?.key ?? ''),
          this.#key('rep:', net?.reputationGroup ?? ''),
          markValue(now, markFlag(write.deferred, write.message), write.reason),
          ms(write.ttl),
          ms(net?.ttl ?? write.ttl),
          net === undefined ? '0' : '1',
          now,
          this.#halfLifeMs,
          write.message === undefined ? '' : markFlag(true, write.message),
          markValue(now, markFlag(write.deferred, undefined), write.reason),
          write.restartOnly === true ? '1' : '0',
        )
        .then(([address, network]) => {
          if (address !== 'added' && address !== 'kept' && address !== 'restarted') throw new Error(`allowlist script answered ${address}`);
          if (network === '') return { address };
          if (network !== 'added' && network !== 'kept' && network !== 'bad-reputation' && network !== 'dropped') throw new Error(`allowlist script answered ${network}`);
          return { address, network };
        });
    return this.#run('allowlist', call, () => this.#local.allowlist(write, now));
  }

  harvest(group: string, window: number, now: number): Promise<number> {
    const length = windowMs(window);
    const call = (): Promise<number> =>
      this.#scripts.tarpitHarvest(
        // The window is in the key: a new window starts from nothing, as HarvestWindow.setWindow does.
        this.#key(`harvest:${length}:`, group),
        Math.floor(now / (length / HARVEST_BUCKETS)),
        HARVEST_BUCKETS,
        length,
      );
    return this.#run('harvest', call, () => this.#local.harvest(group, window, now));
  }

  greylist(key: GreylistKey, settings: GreylistSettings, now: number): Promise<GreylistOutcome> {
    const pendingMs = ms(settings.pendingExpiry);
    const call = (): Promise<GreylistOutcome> =>
      this.#scripts
        .tarpitGreylist(
          this.#key('grey:net:', key.network),
          this.#key('grey:triplet:', tripletKey(key)),
          now,
          retryDelayMs(settings.minDelay),
          pendingMs,
          ms(settings.passedExpiry),
          pendingMs * PENDING_KEEP_FACTOR,
        )
        .then((outcome) => {
          if (!GREYLIST_OUTCOMES.has(outcome)) throw new Error(`greylist script answered ${outcome}`);
          const known = outcome as GreylistOutcome;
          greylistOutcomes[known].inc();
          return known;
        });
    return this.#run('greylist', call, () => this.#local.greylist(key, settings, now));
  }

  peekGreylist(key: GreylistKey, settings: GreylistSettings, now: number): Promise<GreylistPeek> {
    const call = (): Promise<GreylistPeek> =>
      this.#client.mget(this.#key('grey:net:', key.network), this.#key('grey:triplet:', tripletKey(key))).then(([passed, pending]) => {
        if (passed != null) return { state: 'passed', since: Number(passed) };
        if (pending != null && now - Number(pending) < ms(settings.pendingExpiry)) return { state: 'pending', since: Number(pending) };
        return { state: 'unknown' };
      });
    return this.#run('peek_greylist', call, () => this.#local.peekGreylist(key, settings, now));
  }

  health(): StoreHealth {
    if (this.#outage === undefined) return { kind: 'redis', degraded: false };
    return { kind: 'redis', degraded: true, reason: `${this.#outage}; answering from local memory` };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      // QUIT lets the writes already sent finish first.
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
    storeUp.set({ store: 'redis' }, 0);
  }

  /** The local store that answers during an outage (the tests look into it). */
  get local(): MemoryStore {
    return this.#local;
  }

  #key(kind: string, id: string): string {
    return `${this.#prefix}${kind}${id}`;
  }

  #reputation(bad: string, good: string, at: string, now: number): ReputationSnapshot {
    if (at === '') return NO_REPUTATION;
    const since = Number(at);
    return { bad: decay(Number(bad), since, now, this.#halfLifeMs), good: decay(Number(good), since, now, this.#halfLifeMs) };
  }

  #release(key: string, token: string): void {
    void this.#run('release', () => this.#scripts.tarpitRelease(key, token), () => 0);
  }

  /**
   * Runs `call` on Redis, or `fallback` on the local store: at once while
   * Redis is known to be down, after the error or the timeout otherwise.
   * Never rejects.
   */
  #run<T>(operation: StoreOperation, call: () => Promise<T>, fallback: () => T): Promise<T> {
    if (this.#client.status !== 'ready') {
      storeOperation('redis', operation, 'fallback').inc();
      storeFallbacksTotal.labels(operation).inc();
      return Promise.resolve().then(fallback);
    }
    const start = performance.now();
    let pending: Promise<T>;
    try {
      pending = call();
    } catch (err) {
      pending = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    return pending.then(
      (value) => {
        storeOperationSeconds.labels('redis', operation).observe((performance.now() - start) / 1000);
        storeOperation('redis', operation, 'ok').inc();
        if (this.#outage !== undefined && this.#client.status === 'ready') this.#recover();
        return value;
      },
      (err: unknown) => {
        storeOperationSeconds.labels('redis', operation).observe((performance.now() - start) / 1000);
        const message = err instanceof Error ? err.message : String(err);
        // ioredis' commandTimeout rejects with a plain Error and no code; its text is the only mark.
        // Only the metric's label depends on it: either way the call is answered locally.
        const timedOut = message === 'Command timed out';
        storeOperation('redis', operation, timedOut ? 'timeout' : 'error').inc();
        storeFallbacksTotal.labels(operation).inc();
        this.#fail(timedOut ? `redis ${operation} timed out` : `redis ${operation} failed: ${message}`);
        return fallback();
      },
    );
  }

  #fail(reason: string): void {
    if (this.#closed) return;
    storeUp.set({ store: 'redis' }, 0);
    // Once per outage; "connecting" is the start, not an outage yet.
    if (this.#outage !== undefined && this.#outage !== 'connecting') return;
    this.#outage = reason;
    this.#logger?.warn({ store: 'redis', reason }, 'redis state store unavailable: answering from local memory until it is back');
  }

  #recover(): void {
    if (this.#closed) return;
    storeUp.set({ store: 'redis' }, 1);
    const was = this.#outage;
    this.#outage = undefined;
    if (was !== undefined && was !== 'connecting') this.#logger?.info({ store: 'redis', was }, 'redis state store back: using it again');
  }
}

/**
 * An allowlist entry's value in Redis: `since flag reason`, the flag `0` (not
 * deferred), `1` (deferred) or `m:FINGERPRINT` (deferred, with the message's
 * fingerprint): `1700000000000 m:3f2a9c01 sat the first-contact hold out`.
 * Entries written before issue 11 read `since reason`: their second word is
 * no flag, and they count at once, as they did when they were written.
 */
function markValue(since: number, flag: string, reason: string): string {
  return `${since} ${flag} ${reason}`;
}

function markFlag(deferred: boolean, message: string | undefined): string {
  if (!deferred) return '0';
  return message === undefined ? '1' : `m:${message}`;
}

function parseMark(value: string): AllowlistMark | undefined {
  if (value === '') return undefined;
  const [since, flag = ''] = value.split(' ', 2);
  const at = Number(since);
  if (!Number.isFinite(at)) return undefined;
  return { since: at, deferred: flag === '1' || flag.startsWith('m:') };
}
