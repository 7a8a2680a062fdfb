/**
 * The one rule for "a retry counts only after a pause" (issue 11), shared by
 * greylisting (a triplet's retry after `greylisting.minDelay`) and first
 * contact (a survivor's retry after `firstContact.minRetryDelay`): a real MTA
 * told 4xx retries from its queue, after minutes (RFC 5321 §4.5.4.1; Postfix's
 * first retry comes after `minimal_backoff_time`, 300 s), while a bot that
 * sat a hold out and comes straight back is not retrying from a queue. The
 * Redis store's greylisting script applies the same comparison with
 * `retryDelayMs` (redis-scripts.ts).
 */

/** The pause in milliseconds, as the stores compare it: 0 means any retry counts. */
export function retryDelayMs(minDelay: number): number {
  return Math.max(0, Math.round(minDelay * 1000));
}

/** True when a retry at `now` (ms) came sooner than `minDelay` seconds after the deferral at `deferredAt` (ms). */
export function retriedTooSoon(deferredAt: number, now: number, minDelay: number): boolean {
  return now - deferredAt < retryDelayMs(minDelay);
}
