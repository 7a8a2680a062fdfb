/**
 * Metrics of the state stores (memory and Redis), on the one registry (docs/design.md §6).
 * Counts with fixed labels are tallies bound once here (src/metrics/tally-counter.ts), so
 * a lookup on the hot path costs an addition, not a label-hash.
 */
import { Counter, Gauge, Histogram } from 'prom-client';

import { registry } from '../metrics/registry.js';
import { TallyCounter } from '../metrics/tally-counter.js';

/** Counted by the policy engine, which decides what an entry is worth (its `result` labels are bound there). */
export const allowlistCacheTotal = new TallyCounter({
  name: 'smtp_tarpit_allowlist_cache_total',
  help: 'Allowlist cache lookups at connect by result (hit: the client passed a hold before and skips the hold and the costly checks; network: a neighbour in its network did, and it skips the hold; early: it came back sooner than firstContact.minRetryDelay after its 451 and is held again; miss).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const allowlistCacheEntries = new Gauge({
  name: 'smtp_tarpit_allowlist_cache_entries',
  help: 'Clients held in this process\'s in-memory allowlist cache (expired ones included until they are looked up or pushed out); with the Redis store, only what was learnt locally during an outage (the shared cache is in Redis).',
  registers: [registry],
});

export const stateEvictionsTotal = new Counter({
  name: 'smtp_tarpit_state_evictions_total',
  help: 'Entries pushed out of a full in-memory store before they expired, by store (allowlist, rate, harvest, greylist, reputation): raise its size if this grows.',
  labelNames: ['store'] as const,
  registers: [registry],
});

/** Store operations: the `operation` names both stores count. */
export type StoreOperation = 'connect' | 'finish' | 'release' | 'allowlist' | 'harvest' | 'greylist' | 'peek_greylist';
export type StoreResult = 'ok' | 'error' | 'timeout' | 'fallback';

export const storeOperationsTotal = new TallyCounter({
  name: 'smtp_tarpit_store_operations_total',
  help: 'State store operations by store (memory, redis), operation and result (ok; error or timeout: Redis failed and the local memory store answered; fallback: Redis was known down and the local memory store answered at once).',
  labelNames: ['store', 'operation', 'result'] as const,
  registers: [registry],
});

const storeTallies = new Map<string, { inc(): void }>();

/** The tally for one label set, bound on first use: a handful of label sets, each bound once. */
export function storeOperation(store: 'memory' | 'redis', operation: StoreOperation, result: StoreResult): { inc(): void } {
  const key = `${store} ${operation} ${result}`;
  let tally = storeTallies.get(key);
  if (tally === undefined) {
    tally = storeOperationsTotal.tally({ store, operation, result });
    storeTallies.set(key, tally);
  }
  return tally;
}

/**
 * Round-trip time of shared-store operations. Only the Redis store observes
 * it: a memory operation takes well under a microsecond and an observation
 * would cost as much as the operation (see memory-store.ts).
 */
export const storeOperationSeconds = new Histogram({
  name: 'smtp_tarpit_store_operation_seconds',
  help: 'Time a shared state store took to answer, by store and operation (Redis round trips; timeouts included at their timeout).',
  labelNames: ['store', 'operation'] as const,
  buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  registers: [registry],
});

export const storeFallbacksTotal = new Counter({
  name: 'smtp_tarpit_store_fallbacks_total',
  help: 'Operations the local memory store answered because Redis was unreachable, failed or was too slow, by operation: mail still flows, but what is learnt meanwhile stays in this process.',
  labelNames: ['operation'] as const,
  registers: [registry],
});

/** Labelled by store, so a process on the memory store exports no series (nothing to be up or down); with workers, the lowest. */
export const storeUp = new Gauge({
  name: 'smtp_tarpit_store_up',
  help: '1 when the shared (Redis) state store is connected and answering, 0 while the local memory store stands in for it; absent with the memory store.',
  labelNames: ['store'] as const,
  registers: [registry],
  aggregator: 'min',
});

export type GreylistOutcomeLabel = 'new' | 'early' | 'passed' | 'allowlisted' | 'expired';

export const greylistTotal = new TallyCounter({
  name: 'smtp_tarpit_greylist_total',
  help: 'Greylisting decisions by outcome (new: first sight, told to retry; early: retried before the minimum delay; passed: retried in time, network allowlisted; allowlisted: network passed before; expired: retried after the pending expiry, starts again).',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

export const greylistOutcomes: Readonly<Record<GreylistOutcomeLabel, { inc(): void }>> = {
  new: greylistTotal.tally({ outcome: 'new' }),
  early: greylistTotal.tally({ outcome: 'early' }),
  passed: greylistTotal.tally({ outcome: 'passed' }),
  allowlisted: greylistTotal.tally({ outcome: 'allowlisted' }),
  expired: greylistTotal.tally({ outcome: 'expired' }),
};
