/**
 * The allowlist cache's check (issue 11): what a client's entries are worth
 * when it connects. A survivor of the first-contact hold was told 451 and is
 * remembered; its retry is relayed, but only once it comes after the pause
 * (`firstContact.minRetryDelay`): real MTAs retry from their queue after
 * minutes (RFC 5321 §4.5.4.1; Postfix's first retry comes after
 * `minimal_backoff_time`, 300 s), while a bot that sat the hold out and comes
 * straight back is not retrying from a queue. The pause is the one rule
 * greylisting keeps too (state/retry-delay.ts).
 *
 * A survivor's network is remembered with it (a big sender's pool retries
 * from a neighbour address), and vouches for its other addresses once the
 * same pause is over.
 *
 * Pure: the store found the entries, the engine counts and adds the evidence.
 */
import { createHash } from 'node:crypto';
import { retriedTooSoon } from '../../state/retry-delay.js';
import type { AllowlistMarks } from '../../state/store.js';
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';

/** What the entries are worth now: a pass by the client's address or its network, an early retry (held again), or nothing. */
export type Pass = { readonly kind: 'address' | 'network' | 'early'; readonly evidence: Evidence } | { readonly kind: 'miss' };

const MISS: Pass = Object.freeze({ kind: 'miss' });
const ADDRESS_PASS: Pass = Object.freeze({
  kind: 'address',
  evidence: Object.freeze({ check: 'allowlist-cache', weight: 0, reason: 'passed a hold before (allowlist cache)', class: 'allowlisted' }),
});
const NETWORK_PASS: Pass = Object.freeze({
  kind: 'network',
  evidence: Object.freeze({ check: 'allowlist-cache', weight: 0, reason: 'its network passed a hold (allowlist cache, allowlistCache.network)', class: 'allowlisted' }),
});

/**
 * The client's own entry decides first: its own return too soon is an early
 * retry, evidence against it, whatever its network's entry says. A network's
 * entry too young is simply no pass yet: a neighbour connecting for another
 * message is not retrying. An entry earned without a deferral (a greet
 * wait's survivor, relayed at once) counts at once.
 */
export function checkPass(marks: AllowlistMarks, now: number, policy: Pick<Policy, 'firstContact'>): Pass {
  const { address, network } = marks;
  const minDelay = policy.firstContact.minRetryDelay;
  if (address !== undefined) {
    if (!address.deferred || !retriedTooSoon(address.since, now, minDelay)) return ADDRESS_PASS;
    const after = Math.max(0, Math.round((now - address.since) / 100) / 10);
    return {
      kind: 'early',
      evidence: {
        check: 'early-retry',
        weight: policy.firstContact.earlyRetry,
        class: 'first-contact',
        reason: `came back ${after} s after its 451; a retry counts from ${minDelay} s on (firstContact.minRetryDelay)`,
      },
    };
  }
  if (network !== undefined && !(network.deferred && retriedTooSoon(network.since, now, minDelay))) return NETWORK_PASS;
  return MISS;
}

/** The message a survivor was told 451 for, as its envelope names it. */
export interface DeferredMessage {
  readonly sender: string;
  readonly recipients: readonly string[];
}

/**
 * A short fingerprint of a deferred message's envelope (sender and
 * recipients, lower-cased, recipients in any order), as greylisting keys a
 * retry by its triplet: the same fingerprint again is the same message
 * retried; another is the sender's next queued message. The store keeps it,
 * never the addresses themselves.
 */
export function messageFingerprint(message: DeferredMessage): string {
  const recipients = message.recipients.map((r) => r.toLowerCase()).sort();
  return createHash('sha256').update([message.sender.toLowerCase(), ...recipients].join('\n')).digest('hex').slice(0, 16);
}
