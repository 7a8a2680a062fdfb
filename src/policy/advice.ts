/**
 * Advice for a client the policy holds (issue 11): what a newcomer testing
 * from the machine itself needs to hear, and the shortest change that would
 * let a client through. A local test with swaks' defaults (a bare host name
 * for HELO, no PTR record) scores rdns +2 and helo.notFqdn +1: exactly the
 * tarpit's threshold, so the test is held and told 451, every time, with no
 * hint of why. The session log line (SessionPolicy.summary) and `explain`
 * say it here, from the evidence itself, so the advice never disagrees with
 * what the checks found.
 *
 * Pure: it reads evidence, never asks DNS or the store.
 */
import { isLocalAddress, parseIp } from '../core/ip.js';
import type { Evidence, Verdict } from './evidence.js';
import type { Policy } from './spec.js';

/** What advice needs to know of a session (SessionPolicy has it all). */
export interface AdviceSubject {
  readonly address: string;
  readonly evidence: readonly Evidence[];
  readonly score: number;
  readonly verdict: Verdict;
  readonly firstContact: boolean;
  readonly policy: Pick<Policy, 'thresholds' | 'firstContact'>;
}

/**
 * Evidence an admin or the sender can change, and how, by check name; the
 * rest (pregreets, pipelining, harvesting) is behaviour only the client can
 * change and never comes up for an MTA.
 */
const FIXES: Readonly<Record<string, (e: Evidence) => string>> = {
  rdns: (e) =>
    e.reason.startsWith('no reverse DNS') ? 'give it a PTR record whose name resolves back to it' : 'make its PTR name resolve back to it (forward-confirmed reverse DNS)',
  'helo.notFqdn': () => 'send a fully qualified HELO name (swaks: --helo mail.example.org)',
  'helo.badSyntax': () => 'send a fully qualified HELO name (swaks: --helo mail.example.org)',
  'helo.literalMismatch': () => 'send its own address literal or its name in HELO',
  'helo.claimsUs': () => 'stop sending our own name or address in HELO',
  block: (e) => `take it off the block list (${e.reason.replace(/^listed in /, '')})`,
  dnsbl: (e) => `get it off the DNS blocklist (${e.reason})`,
  rate: () => 'open fewer connections from its network (rate limit)',
  reputation: () => 'wait for its network\'s bad history to fade (reputation.halfLife)',
  'early-retry': (e) => `retry later (${e.reason})`,
};

/**
 * For a loopback or private client that is held: why, in plain words, and
 * what lets it through. Undefined for any other client, or one not held.
 */
export function localHoldHint(subject: AdviceSubject): string | undefined {
  const ip = parseIp(subject.address);
  if (ip === undefined || !isLocalAddress(ip)) return undefined;
  const local = subject.evidence.filter((e) => e.weight > 0 && (e.check === 'rdns' || e.check.startsWith('helo.')));
  const why = local.map((e) => `${e.reason} (${e.check} +${e.weight})`).join('; ');
  const held =
    subject.verdict === 'tarpit'
      ? `held in the tarpit: score ${subject.score} reaches verdicts.tarpit (${subject.policy.thresholds.tarpit})${why === '' ? '' : ` with ${why}`}`
      : `held as a first contact (every client nobody vouches for sits a hold out once)${why === '' ? '' : `; it also scores ${why}`}`;
  return (
    `${subject.address} is a local address ${held}. A mail server on the internet has a PTR record that resolves back and a fully qualified HELO name. ` +
    `To test relaying from here, list ${subject.address} in policies/allow.cidr; \`smtp-tarpit explain --ip ${subject.address} --helo NAME\` shows what else would do.`
  );
}

/** More fixable pieces of evidence than this are not searched for combinations: no real client shows that many. */
const MAX_FIXABLE = 10;

/**
 * The shortest changes that would let this client's mail be relayed at once,
 * alternatives in order: the allow list (always one line); then every
 * smallest set of fixes that brings its score below the tarpit's threshold
 * (a bad HELO and a missing PTR are each enough for swaks' defaults, and the
 * one in the sender's hands comes first); then what first contact still
 * asks. Empty for a client relayed already.
 */
export function shortestChange(subject: AdviceSubject): string[] {
  const held = subject.verdict !== 'pass' || subject.firstContact;
  if (!held) return [];
  const advice = [`list ${subject.address} in policies/allow.cidr (a partner: no checks, no hold)`];
  const threshold = subject.policy.thresholds.tarpit;
  const then = subject.policy.firstContact.enabled ? `; then ${firstContactAdvice(subject.policy)}` : '';
  if (subject.score >= threshold) {
    const fixable = subject.evidence.filter((e) => e.weight > 0 && FIXES[e.check] !== undefined).slice(0, MAX_FIXABLE);
    const sets = smallestSufficient(fixable, subject.score - threshold);
    if (sets.length === 0) {
      advice.push(`its score stays at ${threshold} or more whatever it fixes (verdicts.tarpit is ${threshold}): the rest is its own behaviour`);
    }
    for (const set of sets) {
      const left = subject.score - set.reduce((sum, e) => sum + e.weight, 0);
      advice.push(`or ${set.map((e) => `${FIXES[e.check]!(e)} (${e.check} +${e.weight})`).join(' and ')}: score ${left}, below verdicts.tarpit (${threshold})${then}`);
    }
  } else if (subject.firstContact) {
    advice.push(`or ${firstContactAdvice(subject.policy)}`);
  }
  return advice;
}

/**
 * Every set of the fewest pieces of evidence whose weights add up to more
 * than `over` (removing them brings the score below the threshold), in the
 * order the evidence came, so the HELO's fix (the sender's to make) and the
 * PTR's each show as one alternative.
 */
function smallestSufficient(evidence: readonly Evidence[], over: number): Evidence[][] {
  for (let size = 1; size <= evidence.length; size++) {
    const found: Evidence[][] = [];
    const pick = (from: number, chosen: Evidence[], weight: number): void => {
      if (chosen.length === size) {
        if (weight > over) found.push(chosen);
        return;
      }
      for (let i = from; i < evidence.length; i++) pick(i + 1, [...chosen, evidence[i]!], weight + evidence[i]!.weight);
    };
    pick(0, [], 0);
    if (found.length > 0) return found.sort((a, b) => senderFirst(a) - senderFirst(b));
  }
  return [];
}

/** Fixes the sender makes itself (its HELO) before those its DNS admin or ours must make. */
function senderFirst(set: readonly Evidence[]): number {
  return set.every((e) => e.check.startsWith('helo.')) ? 0 : 1;
}

function firstContactAdvice(policy: Pick<Policy, 'firstContact'>): string {
  return `as a first contact it sits the hold out once, and its retry ${policy.firstContact.minRetryDelay} s or more after the 451 is relayed (a known sender skips that: knownSenders)`;
}
