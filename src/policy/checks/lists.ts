/**
 * The admin's own lists (docs/design.md §5): `allow.cidr` skips every check,
 * `block.cidr` makes a client suspicious, `knownSenders.networks` spares a
 * known sender the first-contact hold. The evidence names the file and line
 * of the entry that matched, so an admin who wonders why a client was held can
 * find the line to edit.
 */
import type { Ip } from '../../core/ip.js';
import type { Evidence } from '../evidence.js';
import type { CidrEntry, CidrList } from '../lists/cidr-list.js';
import type { Policy } from '../spec.js';

/**
 * The evidence an entry gives, built once per entry: every client a list line
 * matches shares it, which matters when a botnet's /16 is blocked and tens of
 * thousands of its clients are held at once. Entries belong to one compiled
 * policy, whose weights do not change, so the cache never goes stale.
 */
const evidenceOf = new WeakMap<CidrEntry, Evidence>();

function listed(list: CidrList, entry: CidrEntry, make: (reason: string) => Evidence): Evidence {
  let evidence = evidenceOf.get(entry);
  if (evidence === undefined) evidenceOf.set(entry, (evidence = make(`listed in ${list.source}:${entry.line} (${entry.value})`)));
  return evidence;
}

/** Allowlisted evidence (weight 0: the caller skips the other checks) or undefined. */
export function checkAllow(address: string | Ip, policy: Pick<Policy, 'lists'>): Evidence | undefined {
  const list = policy.lists.allow;
  const entry = list.match(address);
  if (entry === undefined) return undefined;
  return listed(list, entry, (reason) => ({ check: 'allow', weight: 0, class: 'allowlisted', reason }));
}

/** Blocklisted evidence with `lists.block.weight`, or undefined when not listed or the weight is 0. */
export function checkBlock(address: string | Ip, policy: Pick<Policy, 'lists'>): Evidence | undefined {
  const { list, weight } = policy.lists.block;
  if (weight === 0) return undefined;
  const entry = list.match(address);
  if (entry === undefined) return undefined;
  return listed(list, entry, (reason) => ({ check: 'block', weight, class: 'blocklisted', reason }));
}

/** Known-sender evidence (weight 0: vouches, known-sender.ts) when the client is in `knownSenders.networks`, or undefined. */
export function checkKnownNetwork(address: string | Ip, policy: Pick<Policy, 'knownSenders'>): Evidence | undefined {
  const list = policy.knownSenders.networks;
  const entry = list.match(address);
  if (entry === undefined) return undefined;
  return listed(list, entry, (reason) => ({ check: 'known-sender', weight: 0, class: 'allowlisted', reason: `${reason}: knownSenders.networks` }));
}
