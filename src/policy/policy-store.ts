/**
 * The policy in force, swapped whole on reload (docs/design.md §4.7). A reload reads
 * and validates every file first; only a policy that loaded completely
 * replaces the old one, so an admin's typo never leaves a half-applied policy
 * or none. Sessions keep the engine they started with; new sessions get the
 * new one. Reloads come from SIGHUP (serve.ts) and from a watch on the
 * directory (an editor's save, a ConfigMap update).
 */
import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from '../metrics/logger.js';
import { PolicyEngine, type Identity, type PolicyState } from './engine.js';
import { loadPolicyDir } from './load.js';
import { storeSettings } from './state.js';
import { policyReloadsTotal, recordPolicyLoad } from './metrics.js';
import type { Policy } from './spec.js';

export type ReloadResult = { readonly ok: true; readonly policy: Policy } | { readonly ok: false; readonly errors: readonly string[] };

/** Saves come in bursts (write, rename, chmod): one reload after the burst settles. */
const WATCH_SETTLE_MS = 300;

export class PolicyStore {
  private engine: PolicyEngine;
  private watcher: FSWatcher | undefined;
  private settle: NodeJS.Timeout | undefined;

  /** Loads the policy once; throws the loader's errors when the directory is invalid at start-up. */
  constructor(
    readonly dir: string,
    private readonly state: PolicyState,
    private readonly us: Identity,
    private readonly logger: Logger,
  ) {
    const policy = loadPolicyDir(dir);
    this.engine = new PolicyEngine(policy, state, us);
    this.applyState(policy);
    recordPolicyLoad(true);
  }

  get current(): PolicyEngine {
    return this.engine;
  }

  reload(trigger: 'sighup' | 'watch' | 'api'): ReloadResult {
    let policy: Policy;
    try {
      policy = loadPolicyDir(this.dir);
    } catch (err) {
      const errors = describe(err);
      policyReloadsTotal.inc({ result: 'error' });
      recordPolicyLoad(false);
      this.logger.error({ trigger, dir: this.dir, errors }, 'policy reload failed; the previous policy stays in force');
      return { ok: false, errors };
    }
    this.engine = new PolicyEngine(policy, this.state, this.us);
    this.applyState(policy);
    policyReloadsTotal.inc({ result: 'ok' });
    recordPolicyLoad(true);
    this.logger.info({ trigger, dir: this.dir }, 'policy reloaded');
    return { ok: true, policy };
  }

  /** Reloads whenever a file in the directory changes; errors are reported like any reload's. */
  watch(): void {
    if (this.watcher) return;
    this.watcher = watch(this.dir, { persistent: false }, () => {
      if (this.settle) clearTimeout(this.settle);
      this.settle = setTimeout(() => {
        this.settle = undefined;
        this.reload('watch');
      }, WATCH_SETTLE_MS);
    });
    this.watcher.on('error', (err) => this.logger.warn({ err, dir: this.dir }, 'policy directory watch failed; SIGHUP still reloads'));
  }

  close(): void {
    this.watcher?.close();
    this.watcher = undefined;
    if (this.settle) clearTimeout(this.settle);
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
