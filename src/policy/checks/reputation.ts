/**
 * Reputation (issue 6, karma-style): what a client's network (its rate
 * group) did lately. The store keeps decayed counts of bad sessions (refused,
 * dropped, hung up while held) and delivered ones; this check turns them into
 * one piece of evidence an admin can read in one sentence: the weight counts
 * once the network's bad count reaches the threshold and outnumbers what it
 * delivered. Neighbours' history is hearsay, so the weight is a nudge, not a
 * verdict: it is all or nothing, never proportional, so `explain` and the
 * session log show one fixed number.
 */
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';
import type { ReputationSnapshot } from '../../state/store.js';

export function checkReputation(snapshot: ReputationSnapshot, policy: Pick<Policy, 'reputation'>): Evidence | undefined {
  const { enabled, weight, threshold, halfLife } = policy.reputation;
  if (!enabled || weight === 0) return undefined;
  if (snapshot.bad < threshold || snapshot.bad <= snapshot.good) return undefined;
  return {
    check: 'reputation',
    weight,
    class: 'reputation',
    reason: `client's network has ${tenths(snapshot.bad)} recent bad sessions against ${tenths(snapshot.good)} delivered (threshold ${threshold}, half-life ${halfLife} s)`,
  };
}

/** Decayed counts are fractional: one decimal is what an admin can use. */
export function tenths(n: number): string {
  return String(Math.round(n * 10) / 10);
}
