/**
 * Greylisting (issue 6), the retry test at RCPT: a real MTA that gets a 4xx
 * retries later (RFC 5321 §4.5.4.1), most bots never do. Not a weight: a
 * session the policy would relay is either exempt, or its triplet's state in
 * the store (src/state/store.ts) says whether this recipient waits.
 *
 * Pure: the engine asks the store and counts; this file only decides who is
 * exempt, what the triplet is and which outcomes defer.
 */
import { withoutTrailingDot } from '../dns/query-name.js';
import type { Ip } from '../../core/ip.js';
import { clientGroup } from '../../state/client-group.js';
import type { GreylistKey, GreylistOutcome } from '../../state/store.js';
import type { Policy } from '../spec.js';

/** What an exemption needs to know about a session (SessionPolicy has it all). */
export interface GreylistSubject {
  readonly trusted: boolean;
  /** The forward-confirmed client name (`[UNAVAILABLE]` when none). */
  readonly clientName: string;
  /** The client was in the allowlist cache at connect: it passed a hold, which is a retry test of its own. */
  readonly cached: boolean;
  readonly score: number;
}

/**
 * Why this client is never greylisted, or undefined when it may be. The
 * allow list and the allowlist cache first (already trusted), then an rDNS
 * suffix (big senders retry from another address of their pool, and some
 * retry slowly), then a score some check made negative (a DNSWL listing).
 */
export function greylistExemption(subject: GreylistSubject, policy: Pick<Policy, 'greylisting'>): string | undefined {
  if (subject.trusted) return 'in the allow list';
  if (subject.cached) return 'in the allowlist cache (passed a hold)';
  const suffix = rdnsSuffix(subject.clientName, policy.greylisting.exempt.rdnsSuffixes);
  if (suffix !== undefined) return `client name ${subject.clientName} is under ${suffix}`;
  const below = policy.greylisting.exempt.trustedBelow;
  if (subject.score < below) return `score ${subject.score} is below ${below}`;
  return undefined;
}

/** The suffix a (lower-case, dotless-ended) name falls under: `google.com` covers `google.com` and `mail-x.google.com`, not `notgoogle.com`. */
export function rdnsSuffix(name: string, suffixes: readonly string[]): string | undefined {
  if (suffixes.length === 0 || name === '[UNAVAILABLE]' || name === '') return undefined;
  const lower = withoutTrailingDot(name.toLowerCase());
  for (const suffix of suffixes) {
    if (lower === suffix || (lower.endsWith(suffix) && lower.charCodeAt(lower.length - suffix.length - 1) === 0x2e)) return suffix;
  }
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
