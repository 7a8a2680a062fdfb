/**
 * Greylisting (issue 6), the retry test at RCPT: a real MTA that gets a 4xx
 * retries later (RFC 5321 §4.5.4.1), most bots never do. Not a weight: a
 * session the policy would relay is either exempt, or its triplet's state in
 * the store (src/state/store.ts) says whether this recipient waits. The pause
 * a retry must keep is state/retry-delay.ts's, shared with first contact.
 *
 * Pure: the engine asks the store and counts; this file only decides who is
 * exempt, what the triplet is and which outcomes defer.
 */
import type { Ip } from '../../core/ip.js';
import { clientGroup } from '../../state/client-group.js';
import type { GreylistKey, GreylistOutcome } from '../../state/store.js';
import type { Policy } from '../spec.js';

/** What an exemption needs to know about a session (SessionPolicy has it all). */
export interface GreylistSubject {
  readonly trusted: boolean;
  /** The client (or its network) passed a hold, itself a retry test: its allowlist-cache entry counted at connect. */
  readonly passed: 'address' | 'network' | undefined;
  /** The knownSenders rule that vouched for the client, if one did. */
  readonly knownSender: string | undefined;
}

/**
 * Why this client is never greylisted, or undefined when it may be: the allow
 * list, the allowlist cache and known senders (big senders retry from another
 * address of their pool, and some retry slowly), as for first contact.
 */
export function greylistExemption(subject: GreylistSubject): string | undefined {
  if (subject.trusted) return 'in the allow list';
  if (subject.passed === 'address') return 'in the allowlist cache (passed a hold)';
  if (subject.passed === 'network') return 'its network is in the allowlist cache (a neighbour passed a hold)';
  if (subject.knownSender !== undefined) return `a known sender (${subject.knownSender})`;
  return undefined;
}

/**
 * The triplet: the client's network (the greylisting prefix: a big sender's
 * retry comes from a neighbour), the sender and the recipient, lower-cased
 * (a retry may spell them differently; `<>` for the null sender).
 */
export function greylistTriplet(address: string | Ip, sender: string, recipient: string, policy: Pick<Policy, 'greylisting'>): GreylistKey {
  return { network: clientGroup(address, policy.greylisting.network), sender: sender === '' ? '<>' : sender.toLowerCase(), recipient: recipient.toLowerCase() };
}

/** Whether the recipient is told to retry (451 4.7.1): a first try, a retry too early, or one too late. */
export function greylistDefers(outcome: GreylistOutcome): boolean {
  return outcome === 'new' || outcome === 'early' || outcome === 'expired';
}
