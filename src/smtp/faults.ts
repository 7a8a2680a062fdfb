/**
 * Test-only fault injection: the programmatic `faults` option of createProxy
 * (never reachable from the CLI or the config file) lets tests make a hook
 * fail in each way smtp-server cannot survive on its own, to prove the trap
 * closes every hole (docs/design.md §4.3).
 */
import type { Stage } from '../core/stage.js';

export type Fault = 'throw' | 'throw-string' | 'reject' | 'timer-throw';

export interface FaultProbe {
  readonly remoteAddress: string;
  readonly sender?: string | undefined;
}

export type FaultPlan = (stage: Stage, probe: FaultProbe) => Fault | undefined;

/** Runs the planned fault, if any, at the start of a hook. */
export async function injectFault(plan: FaultPlan | undefined, stage: Stage, probe: FaultProbe): Promise<void> {
  const fault = plan?.(stage, probe);
  switch (fault) {
    case undefined:
      return;
    case 'throw':
      throw new Error(`injected fault at ${stage}`);
    case 'throw-string':
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- the point is a non-Error throw
      throw `injected string fault at ${stage}`;
    case 'reject':
      await Promise.reject(new Error(`injected rejection at ${stage}`));
      return;
    case 'timer-throw':
      setTimeout(() => {
        throw new Error(`injected timer fault at ${stage}`);
      }, 1);
      return;
  }
}

/** A synchronous variant for hooks smtp-server calls without a callback (onClose). */
export function injectFaultSync(plan: FaultPlan | undefined, stage: Stage, probe: FaultProbe): void {
  const fault = plan?.(stage, probe);
  if (fault === 'throw') throw new Error(`injected fault at ${stage}`);
  if (fault === 'throw-string') {
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- the point is a non-Error throw
    throw `injected string fault at ${stage}`;
  }
}
