/**
 * The policy in force, swapped whole on reload (docs/design.md §4.7). A reload reads
 * and validates every file first; only a policy that loaded completely
 * replaces the old one, so an admin's typo (or an empty policy.yaml, issue 12)
 * never leaves a half-applied policy or none. Sessions keep the engine they
 * started with; new sessions get the new one.
 *
 * Reloads come from SIGHUP (serve.ts) and from a watch on the directory (an
 * editor's save, a ConfigMap update). Both ask through requestReload(): a
 * save followed by SIGHUP, or an editor's write-rename-chmod burst, is one
 * reload once the requests have been quiet for `settleMs`. Such a reload
 * reads the files without blocking and compiles the lists in a worker thread
 * (lists/compile-off-thread.ts), so a 1,000,000-line block list does not stall
 * the sessions being served. reload() is the same, synchronous, for callers
 * that want the verdict at once (tests, tools); it blocks while it compiles.
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../metrics/logger.js';
import { PolicyEngine, type Identity, type PolicyState } from './engine.js';
import { compileListsOffThread, ListWorkerError } from './lists/compile-off-thread.js';
import { loadPolicyDir, loadPolicyDirOffThread } from './load.js';
import { storeSettings } from './state.js';
import { policyReloadsTotal, recordPolicyLoad } from './metrics.js';
import type { Policy } from './spec.js';

export type ReloadResult = { readonly ok: true; readonly policy: Policy } | { readonly ok: false; readonly errors: readonly string[] };

export type ReloadTrigger = 'sighup' | 'watch' | 'api';

/** The timer a requested reload waits on; tests pass one they fire themselves. */
export interface ReloadTimer {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface PolicyStoreOptions {
  /** Quiet time after the last request before the reload runs (ms). */
  readonly settleMs?: number;
  readonly timer?: ReloadTimer;
  /** Loads the directory for a requested reload; default: read without blocking, lists compiled in a worker. */
  readonly load?: (dir: string, signal: AbortSignal) => Promise<Policy>;
}

/** What a reload still waiting or running says when the store closes under it. */
const CLOSED = 'the policy store closed before the reload ran';

/**
 * Saves come in bursts (write, rename, chmod) and an admin's SIGHUP follows a
 * save within a second or so; 300 ms joins the burst and the usual
 * save-then-`systemctl reload`, and is still well under what anyone notices.
 */
const SETTLE_MS = 300;

const realTimer: ReloadTimer = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class PolicyStore {
  private engine: PolicyEngine;
  private watcher: FSWatcher | undefined;
  private readonly settleMs: number;
  private readonly timer: ReloadTimer;
  private readonly loadOffThread: (dir: string, signal: AbortSignal) => Promise<Policy>;
  /** The requested reload waiting for quiet: its triggers, its timer and the callers awaiting it. */
  private pending: { triggers: Set<ReloadTrigger>; handle: unknown; waiters: Array<(r: ReloadResult) => void> } | undefined;
  /** The requested reload running now; the next waits for it, as it may have read the files before they changed. */
  private running: Promise<void> | undefined;
  private readonly closing = new AbortController();

  /** Loads the policy once; throws the loader's errors when the directory is invalid at start-up. */
  constructor(
    readonly dir: string,
    private readonly state: PolicyState,
    private readonly us: Identity,
    private readonly logger: Logger,
    options: PolicyStoreOptions = {},
  ) {
    this.settleMs = options.settleMs ?? SETTLE_MS;
    this.timer = options.timer ?? realTimer;
    this.loadOffThread = options.load ?? (async (d, signal) => (await loadPolicyDirOffThread(d, (jobs) => compileListsOffThread(jobs, signal))).policy);
    const policy = loadPolicyDir(dir);
    this.engine = new PolicyEngine(policy, state, us);
    this.applyState(policy);
    recordPolicyLoad(true);
  }

  get current(): PolicyEngine {
    return this.engine;
  }

  /** Reloads now, on this thread; the answer is the reload's verdict. */
  reload(trigger: ReloadTrigger): ReloadResult {
    return this.reloadHere(trigger);
  }

  private reloadHere(trigger: string): ReloadResult {
    const started = performance.now();
    try {
      return this.apply(trigger, loadPolicyDir(this.dir), started);
    } catch (err) {
      return this.fail(trigger, err, started);
    }
  }

  /**
   * Asks for a reload once requests have been quiet for `settleMs`: requests
   * within that time are one reload. Resolves with that reload's verdict;
   * never rejects.
   */
  requestReload(trigger: ReloadTrigger): Promise<ReloadResult> {
    if (this.closing.signal.aborted) return Promise.resolve({ ok: false, errors: ['the policy store is closed'] });
    const pending = this.pending ?? { triggers: new Set<ReloadTrigger>(), handle: undefined, waiters: [] };
    this.pending = pending;
    pending.triggers.add(trigger);
    if (pending.handle !== undefined) this.timer.clear(pending.handle);
    pending.handle = this.timer.set(() => this.startPending(), this.settleMs);
    return new Promise((resolve) => pending.waiters.push(resolve));
  }

  /** Resolves once no requested reload is waiting or running (tests, benchmarks). */
  async settled(): Promise<void> {
    while (this.pending !== undefined || this.running !== undefined) {
      if (this.running !== undefined) await this.running;
      else await new Promise<void>((resolve) => this.pending?.waiters.push(() => resolve()));
    }
  }

  /** Reloads whenever a file in the directory changes; errors are reported like any reload's. */
  watch(): void {
    if (this.watcher) return;
    this.watcher = watch(this.dir, { persistent: false }, () => void this.requestReload('watch'));
    this.watcher.on('error', (err) => this.logger.warn({ err, dir: this.dir }, 'policy directory watch failed; SIGHUP still reloads'));
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    // Cancels a compile in flight (its worker is terminated) and answers every waiter.
    this.closing.abort();
    const pending = this.pending;
    this.pending = undefined;
    if (pending) {
      this.timer.clear(pending.handle);
      for (const resolve of pending.waiters) resolve({ ok: false, errors: [CLOSED] });
    }
  }

  private startPending(): void {
    const pending = this.pending;
    if (pending === undefined) return;
    if (this.running !== undefined) {
      // Run when the one in flight is done; requests arriving meanwhile still join this one.
      pending.handle = undefined;
      void this.running.then(() => {
        if (this.pending === pending && pending.handle === undefined) this.startPending();
      });
      return;
    }
    this.pending = undefined;
    // One reload for every request it answers: the log names them all (`watch+sighup`).
    const run: Promise<void> = this.reloadOffThread([...pending.triggers].join('+'))
      .then((result) => {
        for (const resolve of pending.waiters) resolve(result);
      })
      .finally(() => {
        if (this.running === run) this.running = undefined;
      });
    this.running = run;
  }

  private async reloadOffThread(trigger: string): Promise<ReloadResult> {
    const started = performance.now();
    let policy: Policy;
    try {
      policy = await this.loadOffThread(this.dir, this.closing.signal);
    } catch (err) {
      if (this.closing.signal.aborted) return { ok: false, errors: [CLOSED] };
      if (!(err instanceof ListWorkerError)) return this.fail(trigger, err, started);
      // No worker (a thread limit, a broken install): a reload that stalls beats a policy that cannot change.
      this.logger.warn({ err, dir: this.dir }, 'list compiler thread failed; compiling the policy on the main thread');
      return this.reloadHere(trigger);
    }
    if (this.closing.signal.aborted) return { ok: false, errors: [CLOSED] };
    return this.apply(trigger, policy, started);
  }

  private apply(trigger: string, policy: Policy, started: number): ReloadResult {
    this.engine = new PolicyEngine(policy, this.state, this.us);
    this.applyState(policy);
    policyReloadsTotal.inc({ result: 'ok' });
    recordPolicyLoad(true);
    this.logger.info({ trigger, dir: this.dir, ms: Math.round(performance.now() - started) }, 'policy reloaded');
    return { ok: true, policy };
  }

  private fail(trigger: string, err: unknown, started: number): ReloadResult {
    const errors = describe(err);
    policyReloadsTotal.inc({ result: 'error' });
    recordPolicyLoad(false);
    this.logger.error({ trigger, dir: this.dir, errors, ms: Math.round(performance.now() - started) }, 'policy reload failed; the previous policy stays in force');
    return { ok: false, errors };
  }

  /** The store's settings follow the policy in force; what it holds is kept across the reload. */
  private applyState(policy: Policy): void {
    this.state.store.configure(storeSettings(policy));
  }
}

function describe(err: unknown): string[] {
  if (err && typeof err === 'object' && 'errors' in err && Array.isArray(err.errors)) {
    return err.errors.map((e) => String(e instanceof Error ? e.message : e));
  }
  return [err instanceof Error ? err.message : String(err)];
}
