/**
 * Metrics of the in-memory state stores, on the one registry (DESIGN §6).
 * Children with fixed labels are bound once here, so a lookup on the hot path
 * costs an increment, not a label-hash.
 */
import { Counter, Gauge } from 'prom-client';

import { registry } from '../metrics/registry.js';

export const allowlistCacheTotal = new Counter({
  name: 'smtp_tarpit_allowlist_cache_total',
  help: 'Allowlist cache lookups by result (hit: the client passed before and skips the hold and the costly checks; miss).',
  labelNames: ['result'] as const,
  registers: [registry],
});
export const allowlistCacheHit = allowlistCacheTotal.labels('hit');
export const allowlistCacheMiss = allowlistCacheTotal.labels('miss');

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
