/**
 * DNS metrics (docs/design.md §6: DNS lookup latency). `zone` is a DNSBL/DNSWL zone
 * from the policy or `rdns` for PTR and forward-confirmation lookups: a
 * closed, admin-written set, never the name asked (which holds the client's
 * address).
 */
import { Histogram } from 'prom-client';
import { registry } from '../../metrics/registry.js';
import { TallyCounter } from '../../metrics/tally-counter.js';

/** The `result` label's values: what dns-client.ts makes of an answer. */
export const DNS_RESULTS = ['answer', 'nxdomain', 'timeout', 'error'] as const;

export const dnsLookupSeconds = new Histogram({
  name: 'smtp_tarpit_dns_lookup_seconds',
  help: 'DNS lookups that went to the resolver (cache hits excluded), by zone (a DNSBL/DNSWL zone, or rdns) and result (answer, nxdomain, timeout, error).',
  labelNames: ['zone', 'result'] as const,
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});

export const dnsCacheTotal = new TallyCounter({
  name: 'smtp_tarpit_dns_cache_total',
  help: 'DNS lookups by whether the answer cache had them (hit) or they went to the resolver (miss).',
  labelNames: ['result'] as const,
  registers: [registry],
});
