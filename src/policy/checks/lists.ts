/**
 * The admin's own lists (DESIGN §5): `allow.cidr` skips every check,
 * `block.cidr` makes a client suspicious. The evidence names the file and line
 * of the entry that matched, so an admin who wonders why a client was held can
 * find the line to edit.
 */
import type { Ip } from '../../core/ip.js';
import type { Evidence } from '../evidence.js';
import type { CidrEntry, CidrList } from '../lists/cidr-list.js';
import type { Policy } from '../spec.js';

/** Allowlisted evidence (weight 0: the caller skips the other checks) or undefined. */
export function checkAllow(address: string | Ip, policy: Pick<Policy, 'lists'>): Evidence | undefined {
  const list = policy.lists.allow;
  const entry = list.match(address);
  if (entry === undefined) return undefined;
  return { check: 'allow', weight: 0, class: 'allowlisted', reason: `listed in ${where(list, entry)}` };
}

/** Blocklisted evidence with `lists.block.weight`, or undefined when not listed or the weight is 0. */
export function checkBlock(address: string | Ip, policy: Pick<Policy, 'lists'>): Evidence | undefined {
  const { list, weight } = policy.lists.block;
  if (weight === 0) return undefined;
  const entry = list.match(address);
  if (entry === undefined) return undefined;
  return { check: 'block', weight, class: 'blocklisted', reason: `listed in ${where(list, entry)}` };
}

function where(list: CidrList, entry: CidrEntry): string {
  return `${list.source}:${entry.line} (${entry.value})`;
}
