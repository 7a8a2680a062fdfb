/**
 * What the policy engines of one process share and keep across reloads: the
 * DNS client and its cache, the allowlist cache, the rate and harvest windows
 * (DESIGN §3 state: in memory here; issue 6 adds Redis for a fleet).
 */
import { networkInterfaces } from 'node:os';
import type { Config } from '../config/schema.js';
import { AllowlistCache } from '../state/allowlist-cache.js';
import { HarvestWindow } from '../state/harvest-window.js';
import { RateLimiter } from '../state/rate-limiter.js';
import { DnsClient } from './dns/dns-client.js';
import type { Identity, PolicyState } from './engine.js';

export function createPolicyState(config: Config): PolicyState {
  return {
    dns: new DnsClient({ servers: config.dns.servers, timeout: config.dns.timeout }),
    // Sized by the policy on load (PolicyStore.applyState); these hold until then.
    allowlist: new AllowlistCache({ ttl: 3600, maxEntries: 1000 }),
    rates: new RateLimiter(),
    harvest: new HarvestWindow(),
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
