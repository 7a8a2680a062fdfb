/**
 * Recipient harvesting (issue 3): a client guessing addresses collects
 * rejections from the backend. Counted two ways so neither a burst in one
 * session nor a slow sweep over many sessions from one network goes unseen:
 * the session's own count, and the client group's count in the sliding window
 * (src/state/harvest-window.ts, which includes this session's rejections).
 *
 * Pure: call it after each rejected recipient and add its evidence once per
 * session (`SessionPolicy.once('harvest')`); the weight is for the pattern, not per
 * recipient.
 */
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';

export function checkHarvest(sessionRejected: number, windowRejected: number, policy: Pick<Policy, 'harvest'>): Evidence | undefined {
  const { rejected: limit, window, weight } = policy.harvest;
  if (weight === 0 || limit <= 0) return undefined;
  if (sessionRejected >= limit) {
    return { check: 'harvest', weight, class: 'harvest', reason: `${sessionRejected} recipients rejected by the backend in this session (limit ${limit})` };
  }
  if (windowRejected >= limit) {
    return {
      check: 'harvest',
      weight,
      class: 'harvest',
      reason: `${windowRejected} recipients rejected by the backend for the client's network in ${window} s (limit ${limit})`,
    };
  }
  return undefined;
}
