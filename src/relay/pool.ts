/**
 * A bounded set of backend connections. Postfix refuses a second XCLIENT on a
 * connection (550 5.7.0, docs/platform-notes.md), so each connection serves exactly one
 * client session and is closed when that session releases it; the pool's job
 * is to have spares already connected, greeted and EHLO'd, so a session does
 * not pay for that at its first MAIL.
 *
 * Guarantees: connecting + idle + busy + closing never exceeds `size`; idle
 * spares never exceed `warm` and are closed after `idleTimeout` (an idle pooled
 * connection holds a backend smtpd process; Haraka dropped its pool in v3 for
 * starving the backend that way); a down backend fails acquires fast; close()
 * leaves no timer, socket or listener behind.
 */
import { setMaxListeners } from 'node:events';
import { SmtpReplyError, replyError } from '../core/errors.js';
import {
  backendConnectsTotal,
  backendPoolConnections,
  backendPoolSize,
  backendPoolWaitSeconds,
  backendUp,
  limitHitsTotal,
} from '../metrics/registry.js';
import { zeroSeries } from '../metrics/zero-series.js';
import type { BackendConnectionOptions } from './backend-connection.js';
import { BackendConnection } from './backend-connection.js';

// The pool's limits: series from the start (zero-series.ts).
zeroSeries(limitHitsTotal, [{ limit: 'pool_wait' }, { limit: 'backend_group' }]);

export interface PoolOptions {
  backend: BackendConnectionOptions;
  /** Most connections open at once: connecting, idle, busy and closing. */
  size: number;
  /** Idle spares kept ready (capped by `size`). */
  warm: number;
  /** Seconds: idle spares older than this are closed (and replaced if still wanted). */
  idleTimeout: number;
  /** Seconds a session waits for a slot before TARPIT_ERR_POOL_EXHAUSTED. */
  acquireTimeout: number;
  /** Connections one client group may hold, busy or waited for, once half the pool is taken; past it acquire fails at once (TARPIT_ERR_BACKEND_GROUP_BUSY). Absent: no cap. */
  maxPerGroup?: number;
  /** Seconds: backoff between failed attempts, doubled per failure up to maxDelay, with jitter. */
  reconnect: { minDelay: number; maxDelay: number };
}

export interface PoolHealth {
  ready: boolean;
  reason?: string;
  open: number;
  idle: number;
  busy: number;
  connecting: number;
}

interface IdleEntry {
  conn: BackendConnection;
  timer: NodeJS.Timeout;
}

interface Waiter {
  resolve(conn: BackendConnection): void;
  reject(err: Error): void;
}

export interface AcquireRequest {
  /** The client's network (client-group.ts): counted against `maxPerGroup` until release. Absent: not counted (an allow-listed client). */
  readonly group?: string | undefined;
  /** Aborting gives up the wait (the session ended); the acquire rejects with the signal's reason. */
  readonly signal?: AbortSignal | undefined;
}

export class BackendPool {
  readonly #options: PoolOptions;
  readonly #idle: IdleEntry[] = [];
  readonly #busy = new Set<BackendConnection>();
  readonly #waiters: Waiter[] = [];
  /** Attempts and quits in flight; close() waits for them. */
  readonly #pending = new Set<Promise<unknown>>();
  readonly #abort = abortController();
  #connecting = 0;
  #closing = 0;
  #warming = false;
  #closed = false;
  #ready = false;
  #reason: string | undefined = 'no backend connection yet';
  #failures = 0;
  /** While now < #downUntil, acquire fails fast with #downError instead of trying. */
  #downUntil = 0;
  #downError: SmtpReplyError | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Connections held or waited for, per client group; a group is gone from the map at 0. */
  readonly #groups = new Map<string, number>();
  /** The group each busy connection counts for. */
  readonly #groupOf = new Map<BackendConnection, string>();

  constructor(options: PoolOptions) {
    this.#options = { ...options, warm: Math.min(options.warm, options.size) };
    backendPoolSize.set(options.size);
    this.#sync();
  }

  /** Begins keeping `warm` spares ready. */
  start(): void {
    this.#warming = true;
    this.#pump();
  }

  /**
   * A live connection for one client session; give it back with release().
   * A group at its share is refused at once rather than queued: waiting would
   * only hand it the next free connection too, and other networks' clients
   * would wait behind it.
   */
  async acquire(request: AcquireRequest = {}): Promise<BackendConnection> {
    if (this.#closed) throw replyError('TARPIT_ERR_SHUTTING_DOWN');
    const { group, signal } = request;
    if (signal?.aborted) throw abortReason(signal);
    if (group === undefined) return this.#acquire(signal);
    const held = this.#groups.get(group) ?? 0;
    if (held >= (this.#options.maxPerGroup ?? Infinity) && this.#contended()) {
      limitHitsTotal.inc({ limit: 'backend_group' });
      throw replyError('TARPIT_ERR_BACKEND_GROUP_BUSY');
    }
    this.#groups.set(group, held + 1);
    let conn: BackendConnection;
    try {
      conn = await this.#acquire(signal);
    } catch (err) {
      this.#ungroup(group);
      throw err;
    }
    this.#groupOf.set(conn, group);
    return conn;
  }

  /**
   * Whether half the pool is taken (busy, or waited for). Below that a
   * network may go past its share: a big sender's burst of parallel sessions
   * (Postfix opens up to 20 to one destination) costs nobody anything while
   * connections are free, and is cut back to its share only when other
   * networks' clients could be kept waiting.
   */
  #contended(): boolean {
    return this.#busy.size + this.#waiters.length >= this.#options.size / 2;
  }

  async #acquire(signal: AbortSignal | undefined): Promise<BackendConnection> {
    const started = performance.now();
    const observe = (): void => backendPoolWaitSeconds.observe((performance.now() - started) / 1000);
    const spare = this.#takeIdle();
    if (spare) {
      this.#busy.add(spare);
      observe();
      this.#pump();
      return spare;
    }
    if (this.#isDown()) {
      observe();
      throw this.#downError ?? replyError('TARPIT_ERR_BACKEND_UNAVAILABLE');
    }
    return new Promise<BackendConnection>((resolve, reject) => {
      const settled = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        observe();
      };
      const waiter: Waiter = {
        resolve: (conn) => {
          settled();
          resolve(conn);
        },
        reject: (err) => {
          settled();
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.#dropWaiter(waiter);
        limitHitsTotal.inc({ limit: 'pool_wait' });
        waiter.reject(replyError('TARPIT_ERR_POOL_EXHAUSTED'));
      }, this.#options.acquireTimeout * 1000);
      const onAbort = (): void => {
        this.#dropWaiter(waiter);
        waiter.reject(abortReason(signal!));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(waiter);
      this.#pump();
    });
  }

  /** Ends a session's use of `conn`: it carried a client identity, so it is closed, never reused. */
  release(conn: BackendConnection): void {
    const group = this.#groupOf.get(conn);
    if (group !== undefined) {
      this.#groupOf.delete(conn);
      this.#ungroup(group);
    }
    if (!this.#busy.delete(conn)) {
      conn.destroy();
      return;
    }
    this.#quit(conn);
  }

  /** Closes a connection that no longer has a place; its slot stays taken until QUIT is done. */
  #quit(conn: BackendConnection): void {
    this.#closing++;
    this.#track(
      conn.quit().finally(() => {
        this.#closing--;
        this.#pump();
      }),
    );
    this.#sync();
  }

  /** Marks the pool unready, e.g. when the backend refused a session's XCLIENT. */
  markUnready(reason: string): void {
    this.#ready = false;
    this.#reason = reason;
    backendUp.set(0);
  }

  health(): PoolHealth {
    const health: PoolHealth = { ready: this.#ready && !this.#closed, open: this.#open(), idle: this.#idle.length, busy: this.#busy.size, connecting: this.#connecting };
    const reason = this.#closed ? 'pool closed' : this.#reason;
    if (!health.ready && reason !== undefined) health.reason = reason;
    return health;
  }

  /** Opens one connection now (start-up check); throws with the reason in `cause`. */
  async probe(): Promise<void> {
    if (this.#closed) throw replyError('TARPIT_ERR_SHUTTING_DOWN');
    let conn: BackendConnection;
    try {
      conn = await this.#attempt();
    } catch (err) {
      // The reply text is for SMTP clients; the operator reads the cause.
      if (!(err instanceof SmtpReplyError) || err.code === 'TARPIT_ERR_BACKEND_REPLY') throw err;
      throw replyError(err.code, { cause: new Error(this.#reason ?? 'backend probe failed', { cause: err.cause }) });
    }
    this.#offer(conn);
    this.#pump();
  }

  /** Stops warming, fails waiters, quits idle spares; busy ones close on release. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#retryTimer);
    this.#abort.abort();
    for (const waiter of this.#waiters.splice(0)) waiter.reject(replyError('TARPIT_ERR_SHUTTING_DOWN'));
    for (const entry of this.#idle.splice(0)) {
      clearTimeout(entry.timer);
      this.#track(entry.conn.quit());
    }
    this.#sync();
    while (this.#pending.size > 0) await Promise.allSettled([...this.#pending]);
    this.#sync();
  }

  // ── internals ────────────────────────────────────────────────────────────

  /** Serves waiters from spares, fails them fast when down, opens what is wanted. */
  #pump(): void {
    if (this.#closed) return;
    let spare: BackendConnection | undefined;
    while (this.#waiters.length > 0 && (spare = this.#takeIdle())) this.#give(spare);
    if (this.#isDown()) {
      // Attempts in flight may still serve some waiters; the rest hear now.
      while (this.#waiters.length > this.#connecting) this.#waiters.pop()?.reject(this.#downError ?? replyError('TARPIT_ERR_BACKEND_UNAVAILABLE'));
    } else {
      const wanted = this.#waiters.length + (this.#warming ? this.#options.warm : 0);
      while (this.#idle.length + this.#connecting < wanted && this.#open() < this.#options.size) this.#spawn();
    }
    this.#sync();
  }

  #spawn(): void {
    this.#track(
      this.#attempt().then(
        (conn) => {
          this.#offer(conn);
          this.#pump();
        },
        () => this.#pump(),
      ),
    );
  }

  /** One connection attempt with its bookkeeping: up/down state, backoff, metrics. */
  async #attempt(): Promise<BackendConnection> {
    this.#connecting++;
    this.#sync();
    let conn: BackendConnection;
    try {
      conn = await BackendConnection.open(this.#options.backend, this.#abort.signal);
    } catch (err) {
      const error = err instanceof SmtpReplyError ? err : replyError('TARPIT_ERR_BACKEND_UNAVAILABLE', { cause: err });
      const cause = error.cause instanceof Error ? error.cause.message : String(error.cause);
      backendConnectsTotal.inc({ result: 'error' });
      this.#down(error, `backend ${this.#where()} unavailable: ${cause}`);
      throw error;
    } finally {
      this.#connecting--;
    }
    if (!conn.supportsXclient(['ADDR'])) {
      this.#track(conn.quit());
      backendConnectsTotal.inc({ result: 'no_xclient' });
      // Without XCLIENT the backend would see every client as us, and Postfix's
      // mynetworks would make it an open relay (docs/design.md §1): refuse to relay.
      const reason = `backend ${this.#where()} does not offer XCLIENT with ADDR in its EHLO reply; list the proxy's address in Postfix's smtpd_authorized_xclient_hosts`;
      const error = replyError('TARPIT_ERR_BACKEND_NO_XCLIENT', { cause: new Error(reason) });
      this.#down(error, reason);
      throw error;
    }
    backendConnectsTotal.inc({ result: 'ok' });
    this.#failures = 0;
    this.#downUntil = 0;
    this.#downError = undefined;
    this.#ready = true;
    this.#reason = undefined;
    backendUp.set(1);
    return conn;
  }

  #down(error: SmtpReplyError, reason: string): void {
    this.#ready = false;
    this.#reason = reason;
    this.#downError = error;
    backendUp.set(0);
    this.#failures++;
    const { minDelay, maxDelay } = this.#options.reconnect;
    const ceiling = Math.min(maxDelay, minDelay * 2 ** Math.min(this.#failures - 1, 30));
    // "Equal jitter": half fixed, half random, so a fleet does not retry in step.
    const delay = ceiling / 2 + (Math.random() * ceiling) / 2;
    this.#downUntil = performance.now() + delay * 1000;
    clearTimeout(this.#retryTimer);
    if (this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      // Timers may fire a hair before performance.now() agrees; the wait is over.
      this.#downUntil = 0;
      this.#pump();
    }, delay * 1000);
    this.#retryTimer.unref();
  }

  /** Connections holding a slot: connecting, idle, busy and closing. */
  #open(): number {
    return this.#idle.length + this.#busy.size + this.#connecting + this.#closing;
  }

  #isDown(): boolean {
    return this.#downUntil > performance.now();
  }

  /** A fresh connection goes to the first waiter, else becomes a spare if one is wanted. */
  #offer(conn: BackendConnection): void {
    if (this.#closed || !conn.alive) {
      this.#track(conn.quit());
    } else if (this.#waiters.length > 0) {
      this.#give(conn);
    } else if (this.#idle.length < this.#options.warm) {
      this.#addIdle(conn);
    } else {
      this.#track(conn.quit());
    }
    this.#sync();
  }

  #give(conn: BackendConnection): void {
    const waiter = this.#waiters.shift();
    if (!waiter) return this.#offer(conn);
    this.#busy.add(conn);
    waiter.resolve(conn);
  }

  #addIdle(conn: BackendConnection): void {
    const entry: IdleEntry = {
      conn,
      timer: setTimeout(() => {
        if (!this.#removeIdle(entry)) return;
        this.#quit(conn);
      }, this.#options.idleTimeout * 1000),
    };
    entry.timer.unref();
    this.#idle.push(entry);
    // A spare the backend closed (Postfix's idle 421, a restart) is dropped and replaced.
    void conn.closed.then(() => {
      if (this.#removeIdle(entry)) this.#pump();
    });
  }

  #removeIdle(entry: IdleEntry): boolean {
    const i = this.#idle.indexOf(entry);
    if (i === -1) return false;
    this.#idle.splice(i, 1);
    clearTimeout(entry.timer);
    this.#sync();
    return true;
  }

  /** The newest live spare; dead ones found on the way are discarded. */
  #takeIdle(): BackendConnection | undefined {
    for (let entry = this.#idle.pop(); entry; entry = this.#idle.pop()) {
      clearTimeout(entry.timer);
      if (entry.conn.alive) return entry.conn;
      entry.conn.destroy();
    }
    return undefined;
  }

  #ungroup(group: string): void {
    const held = (this.#groups.get(group) ?? 1) - 1;
    if (held > 0) this.#groups.set(group, held);
    else this.#groups.delete(group);
  }

  #dropWaiter(waiter: Waiter): void {
    const i = this.#waiters.indexOf(waiter);
    if (i !== -1) this.#waiters.splice(i, 1);
  }

  #track(promise: Promise<unknown>): void {
    // Every tracked promise's outcome is handled where it was made; here we only wait.
    const tracked: Promise<void> = promise.then(
      () => undefined,
      () => undefined,
    );
    void tracked.finally(() => this.#pending.delete(tracked));
    this.#pending.add(tracked);
  }

  #where(): string {
    return `${this.#options.backend.host}:${this.#options.backend.port}`;
  }

  #sync(): void {
    backendPoolConnections.set({ state: 'idle' }, this.#idle.length);
    backendPoolConnections.set({ state: 'busy' }, this.#busy.size);
    backendPoolConnections.set({ state: 'connecting' }, this.#connecting);
  }
}

/** Why a wait was given up: the caller's reason when it is an Error, so a session's own reply reaches its client. */
function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : replyError('TARPIT_ERR_SHUTTING_DOWN');
}

/**
 * One signal aborts every connect in flight on close(); each connect listens to
 * it, so more than 10 at once (warm > 10) would trip Node's leak warning.
 */
function abortController(): AbortController {
  const controller = new AbortController();
  setMaxListeners(0, controller.signal);
  return controller;
}
