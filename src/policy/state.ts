/**
 * What the policy engines of one process share and keep across reloads: the
 * DNS client and its cache, and the state store (docs/design.md §3 state: allowlist
 * cache, rate and harvest windows, reputation, greylist), in memory by
 * default or shared by a fleet (issue 6).
 */
import { networkInterfaces } from 'node:os';
import type { Config } from '../config/schema.js';
import { MemoryStore } from '../state/memory-store.js';
import type { StateStore, StoreSettings } from '../state/store.js';
import type { Policy } from './spec.js';
import { DnsClient } from './dns/dns-client.js';
import type { Identity, PolicyState } from './engine.js';

/** `store`: the process's state store (a Redis one for a fleet); default a fresh memory store. It is configured by the policy on load (PolicyStore.applyState). */
export function createPolicyState(config: Config, store: StateStore = new MemoryStore()): PolicyState {
  return {
    dns: new DnsClient({ servers: config.dns.servers, timeout: config.dns.timeout }),
    store,
  };
}

/** Our name and every address of this machine: a client whose HELO claims one of them is lying. */
export function localIdentity(config: Config): Identity {
  const addresses = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) addresses.add(i.address);
  const host = config.listen.host;
  if (host !== '0.0.0.0' && host !== '::') addresses.add(host);
  return { hostname: config.hostname, addresses: [...addresses] };
}

/** What the state store takes from a policy (on every load: PolicyStore.applyState, and explain). */
export function storeSettings(policy: Policy): StoreSettings {
  return { allowlistCache: policy.allowlistCache, harvestWindow: policy.harvest.window, reputationHalfLife: policy.reputation.halfLife };
}
