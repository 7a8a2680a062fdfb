/**
 * The `knownSenders` check (issue 11): senders that need no test. Big
 * mailbox providers and ESPs retry from any address of a large pool, so the
 * first-contact hold (and greylisting) would meet them again and again and
 * delay the mail users care most about; postscreen's documentation advises
 * letting DNSWL-listed senders skip its "after 220" tests for the same
 * reason, and OpenBSD's `smtpctl spf walk` lets spamd admins allowlist the big
 * senders' published networks ahead of time.
 *
 * Three rules vouch, cheapest and surest first: the client's address is in
 * `knownSenders.networks` (a list, e.g. walked from SPF records); its
 * forward-confirmed name is under one of `rdnsSuffixes` (only the domain's
 * owner can make a name under it resolve back to an address); its score at
 * connect is below `trustedBelow` (a DNSWL's negative weight). The evidence
 * weighs nothing: a known sender is still scored on everything else it shows.
 */
import type { Ip } from '../../core/ip.js';
import { withoutTrailingDot } from '../dns/query-name.js';
import { NAME_TEMPUNAVAIL, NAME_UNAVAILABLE } from '../dns/fcrdns.js';
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';
import { checkKnownNetwork } from './lists.js';

/** What vouched: the evidence, and the rule by name for the session's log line and `explain`. */
export interface KnownSender {
  readonly evidence: Evidence;
  /** `knownSenders.networks`, `knownSenders.rdnsSuffixes: google.com` or `knownSenders.trustedBelow`. */
  readonly rule: string;
}

export interface KnownSenderSubject {
  /** The client's address, parsed when the caller has it so. */
  readonly address: string | Ip;
  /** The forward-confirmed client name, or `[UNAVAILABLE]`/`[TEMPUNAVAIL]`. */
  readonly clientName: string;
  /** The score from the connect-stage checks. */
  readonly score: number;
}

export function checkKnownSender(subject: KnownSenderSubject, policy: Pick<Policy, 'knownSenders'>): KnownSender | undefined {
  const listed = checkKnownNetwork(subject.address, policy);
  if (listed !== undefined) return { evidence: listed, rule: 'knownSenders.networks' };
  const known = policy.knownSenders;
  const suffix = rdnsSuffix(subject.clientName, known.rdnsSuffixes);
  if (suffix !== undefined) {
    return {
      evidence: { check: 'known-sender', weight: 0, class: 'allowlisted', reason: `forward-confirmed name ${subject.clientName} is under ${suffix}: knownSenders.rdnsSuffixes` },
      rule: `knownSenders.rdnsSuffixes: ${suffix}`,
    };
  }
  if (subject.score < known.trustedBelow) {
    return {
      evidence: { check: 'known-sender', weight: 0, class: 'allowlisted', reason: `score ${subject.score} is below knownSenders.trustedBelow (${known.trustedBelow})` },
      rule: 'knownSenders.trustedBelow',
    };
  }
  return undefined;
}

/** The suffix a name falls under: `google.com` covers `google.com` and `mail-x.google.com`, not `notgoogle.com`. */
export function rdnsSuffix(name: string, suffixes: readonly string[]): string | undefined {
  if (suffixes.length === 0 || name === NAME_UNAVAILABLE || name === NAME_TEMPUNAVAIL || name === '') return undefined;
  const lower = withoutTrailingDot(name.toLowerCase());
  for (const suffix of suffixes) {
    if (lower === suffix || (lower.endsWith(suffix) && lower.charCodeAt(lower.length - suffix.length - 1) === 0x2e)) return suffix;
  }
  return undefined;
}
