/**
 * Per-group connection limits (issue 3): sessions open at once and new
 * sessions per minute, counted by the state store (src/state/store.ts) for the client's
 * group (src/state/client-group.ts). One piece of evidence however many limits
 * are exceeded: both say the same thing, too much from one network.
 */
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';
import type { RateSnapshot } from '../../state/store.js';

export function checkRate(snapshot: RateSnapshot, policy: Pick<Policy, 'rate'>): Evidence | undefined {
  const { maxConcurrent, maxPerMinute, weight } = policy.rate;
  if (weight === 0) return undefined;
  const over: string[] = [];
  if (snapshot.concurrent > maxConcurrent) over.push(`${snapshot.concurrent} sessions open at once (limit ${maxConcurrent})`);
  if (snapshot.perMinute > maxPerMinute) over.push(`${snapshot.perMinute} new sessions in a minute (limit ${maxPerMinute})`);
  if (over.length === 0) return undefined;
  return { check: 'rate', weight, class: 'rate', reason: `client's network has ${over.join(' and ')}` };
}
