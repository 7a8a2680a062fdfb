/**
 * Polling instead of sleeping: a test that sleeps a fixed time and then
 * asserts that something happened is a race a busy CI machine loses. This
 * waits until the condition holds, however long that takes, up to a limit
 * generous enough that only a real failure reaches it.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/** Long enough that a loaded 2-core CI box never reaches it when the code is right. */
export const PATIENCE_MS = 15_000;

export interface WaitForOptions {
  /** Gives up after this many ms. @default PATIENCE_MS */
  readonly timeoutMs?: number;
  /** Poll interval in ms. @default 5 */
  readonly everyMs?: number;
  /** Named in the error, with `detail()` if given, so a failure says what was awaited and what was seen. */
  readonly what?: string;
  readonly detail?: () => string;
}

/** Resolves once `cond` returns true (sync or async); throws after `timeoutMs`. */
export async function waitFor(cond: () => boolean | Promise<boolean>, options: WaitForOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? PATIENCE_MS;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (performance.now() > deadline) {
      const seen = options.detail ? ` (${options.detail()})` : '';
      throw new Error(`${options.what ?? 'condition'} not met within ${timeoutMs} ms${seen}`);
    }
    await sleep(options.everyMs ?? 5);
  }
}
