/**
 * Metrics of the in-memory state stores, on the one registry (DESIGN §6).
 * Counts with fixed labels are tallies bound once here (src/metrics/tally-counter.ts), so
 * a lookup on the hot path costs an addition, not a label-hash.
 */
import { Counter, Gauge } from 'prom-client';

import { registry } from '../metrics/registry.js';
import { TallyCounter } from '../metrics/tally-counter.js';

export const allowlistCacheTotal = new TallyCounter({
  name: 'smtp_tarpit_allowlist_cache_total',
  help: 'Allowlist cache lookups by result (hit: the client passed before and skips the hold and the costly checks; miss).',
  labelNames: ['result'] as const,
  registers: [registry],
});
export const allowlistCacheHit = allowlistCacheTotal.tally({ result: 'hit' });
export const allowlistCacheMiss = allowlistCacheTotal.tally({ result: 'miss' });

export const allowlistCacheEntries = new Gauge({
  name: 'smtp_tarpit_allowlist_cache_entries',
  help: 'Clients held in the allowlist cache (expired ones included until they are looked up or pushed out).',
  registers: [registry],
});

export const stateEvictionsTotal = new Counter({
  name: 'smtp_tarpit_state_evictions_total',
  help: 'Entries pushed out of a full in-memory store before they expired, by store (allowlist, rate, harvest): raise its size if this grows.',
  labelNames: ['store'] as const,
  registers: [registry],
});
