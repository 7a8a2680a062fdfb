/**
 * The process's state store from the config's `state` section (or
 * `serve --store`): in memory, or shared through Redis by every process and
 * host pointed at the same server.
 */
import type { Config } from '../config/schema.js';
import { ms } from './duration.js';
import { MemoryStore } from './memory-store.js';
import { RedisStore, type StoreLogger } from './redis-store.js';
import type { StateStore, StoreHealth } from './store.js';

export function createStateStore(state: Config['state'], logger: StoreLogger): StateStore {
  if (state.store === 'memory') return new MemoryStore();
  return new RedisStore({ url: state.store, prefix: state.prefix, timeout: ms(state.timeout), logger });
}

/** How long start-up (serve, explain) waits for a shared store's connection. */
const STORE_CONNECT_WAIT_MS = 2000;

/**
 * A shared store answers from local memory until its connection is up: wait
 * for it, up to `waitMs`, so the first answers come from what the fleet
 * remembers. Resolves with the store's health then (degraded: still not up).
 */
export async function storeConnected(store: StateStore, waitMs = STORE_CONNECT_WAIT_MS): Promise<StoreHealth> {
  const deadline = Date.now() + waitMs;
  while (store.health().degraded && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return store.health();
}
