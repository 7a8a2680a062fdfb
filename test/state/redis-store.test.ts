import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { Redis } from 'ioredis';

import { registry } from '../../src/metrics/registry.js';
import { RedisStore, type RedisStoreOptions, type StoreLogger } from '../../src/state/redis-store.js';
import { findTool, requireTool, type TestContext } from '../helpers/require-tool.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { PATIENCE_MS, waitFor } from '../helpers/wait-for.js';
import { storeContract } from './store-contract.js';

/** One server for the file, started on first use; each test gets its own key prefix, so tests never see each other's keys. */
let shared: Promise<RedisServer> | undefined;
let prefixes = 0;
const stores: RedisStore[] = [];

function server(): Promise<RedisServer> {
  shared ??= startRedisServer();
  return shared;
}

async function makeStore(t: TestContext, options: Partial<RedisStoreOptions> = {}): Promise<RedisStore | undefined> {
  if (!requireTool(t, 'redis-server')) return undefined;
  const redis = await server();
  // The shipped 100 ms command timeout would send calls to the memory fallback whenever a loaded
  // machine stalls Redis or this process; tests that need it to fire set `timeout` themselves.
  const store = new RedisStore({ url: redis.url, prefix: `test${++prefixes}:`, timeout: 10_000, ...options });
  stores.push(store);
  await ready(store);
  return store;
}

async function ready(store: RedisStore, ms = PATIENCE_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (store.health().degraded) {
    if (Date.now() > deadline) throw new Error(`store not ready: ${store.health().reason}`);
    await sleep(10);
  }
}

after(async () => {
  await Promise.all(stores.map((s) => s.close()));
  if (shared) await (await shared).dispose();
});

storeContract('redis', (t) => makeStore(t));

async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  return metric?.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((n, v) => n + v.value, 0) ?? 0;
}

async function gauge(name: string): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  return metric?.values[0]?.value ?? Number.NaN;
}

describe('RedisStore on a real redis-server', () => {
  let admin: Redis | undefined;
  before(async () => {
    if (findTool('redis-server') === undefined) return;
    admin = new Redis((await server()).url, { connectionName: 'test-admin' });
    // It sees the restart test's outage too; its errors are expected there.
    admin.on('error', () => undefined);
  });
  after(() => admin?.disconnect());

  test('every key carries the prefix and a TTL', async (t) => {
    const store = await makeStore(t, { prefix: 'keys-test:' });
    if (!store || !admin) return;
    const now = Date.now();
    const open = await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: true }, now);
    await store.connect({ client: '192.0.2.2', group: '192.0.2.0/24', count: true }, now);
    await store.allowlist({ client: '192.0.2.1', reason: 'survived', ttl: 600, deferred: true }, now);
    await store.harvest('192.0.2.0/24', 600, now);
    await store.greylist({ network: '192.0.2.0/24', sender: 'a@b', recipient: 'c@d' }, { minDelay: 0, pendingExpiry: 600, passedExpiry: 600 }, now);
    await store.greylist({ network: '192.0.2.0/24', sender: 'a@b', recipient: 'c@d' }, { minDelay: 0, pendingExpiry: 600, passedExpiry: 600 }, now + 1);
    await store.greylist({ network: '198.51.100.0/24', sender: 'a@b', recipient: 'c@d' }, { minDelay: 0, pendingExpiry: 600, passedExpiry: 600 }, now);
    store.finish('192.0.2.0/24', 'bad', now, open.slot);
    await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: false }, now);
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await admin.scan(cursor, 'MATCH', '*', 'COUNT', 1000);
      cursor = next;
      keys.push(...batch.filter((k) => !/^test\d+:/.test(k)));
    } while (cursor !== '0');
    const kinds = new Set(keys.map((k) => k.split(':')[1]));
    assert.deepEqual([...kinds].sort(), ['allow', 'grey', 'harvest', 'open', 'rate', 'rep'], `keys: ${keys.join(', ')}`);
    for (const key of keys) {
      assert.ok(key.startsWith('keys-test:'), `${key} has the prefix`);
      const ttl = await admin.pttl(key);
      assert.ok(ttl > 0, `${key} has a TTL (${ttl})`);
    }
  });

  test('a session never released stops counting after concurrencyTtl, though its group stays busy', async (t) => {
    // The calls' clock decides who counts, but the set also gets a real PEXPIRE of the same TTL:
    // long enough that a loaded machine's real pauses between calls never reach it.
    const store = await makeStore(t, { concurrencyTtl: 30 });
    if (!store) return;
    const group = '203.0.113.0/24';
    const t0 = Date.now();
    const leaked = await store.connect({ client: '203.0.113.1', group, count: true }, t0);
    assert.equal(leaked.rate.concurrent, 1);
    const second = await store.connect({ client: '203.0.113.2', group, count: true }, t0 + 20_000);
    assert.equal(second.rate.concurrent, 2, 'both count while within the TTL');
    second.slot?.release();
    // The first is never released (as after a lost release); 40 s later on the calls' clock only the new session counts.
    const third = await store.connect({ client: '203.0.113.3', group, count: true }, t0 + 40_000);
    assert.equal(third.rate.concurrent, 1, 'the leaked session dropped out on its own');
    third.slot?.release();
  });

  test('race: 50 parallel connects of one group get concurrency 1..50, each once', async (t) => {
    const store = await makeStore(t);
    if (!store) return;
    const now = Date.now();
    const states = await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.connect({ client: `192.0.2.${i}`, group: '192.0.2.0/24', count: true }, now)),
    );
    const seen = states.map((s) => s.rate.concurrent).sort((a, b) => a - b);
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i + 1));
    assert.deepEqual(states.map((s) => s.rate.perMinute).sort((a, b) => a - b), seen, 'per-minute counts likewise');
    for (const s of states) store.finish('192.0.2.0/24', 'neutral', now, s.slot);
    const look = await store.connect({ client: 'x', group: '192.0.2.0/24', count: false }, now);
    assert.deepEqual(look.rate, { concurrent: 0, perMinute: 50 });
  });

  test('race: three stores (three connections, as three processes) share the counts without a lost update', async (t) => {
    const prefix = `race3-${Date.now()}:`;
    const trio = [await makeStore(t, { prefix }), await makeStore(t, { prefix }), await makeStore(t, { prefix })];
    if (trio.some((s) => s === undefined)) return;
    const [a, b, c] = trio as [RedisStore, RedisStore, RedisStore];
    const now = Date.now();
    const states = await Promise.all(
      Array.from({ length: 50 }, (_, i) => [a, b, c][i % 3]!.connect({ client: `192.0.2.${i}`, group: '192.0.2.0/24', count: true }, now)),
    );
    assert.deepEqual(
      states.map((s) => s.rate.concurrent).sort((x, y) => x - y),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    // What one learns the others see.
    await a.allowlist({ client: '203.0.113.5', reason: 'survived', ttl: 60, deferred: true }, now);
    assert.equal((await c.connect({ client: '203.0.113.5', group: '203.0.113.0/24', count: false }, now)).allowlist.address !== undefined, true);
    const grey = { network: '203.0.113.0/24', sender: 's@x', recipient: 'r@y' };
    const settings = { minDelay: 60, pendingExpiry: 3600, passedExpiry: 86_400 };
    assert.equal(await a.greylist(grey, settings, now), 'new');
    assert.equal(await b.greylist(grey, settings, now + 61_000), 'passed', 'a retry on another process passes');
  });

  test('a clean session costs two round trips: connect, then finish with its slot', async (t) => {
    const store = await makeStore(t, { prefix: 'roundtrips:' });
    if (!store) return;
    // Load the scripts first: the first use of each after a (re)start costs a NOSCRIPT and an EVAL, once.
    const warm = await store.connect({ client: '198.51.100.1', group: '198.51.100.0/24', count: true }, Date.now());
    store.finish('198.51.100.0/24', 'delivered', Date.now(), warm.slot);
    await store.connect({ client: '198.51.100.1', group: '198.51.100.0/24', count: false }, Date.now());
    // MONITOR shows every command a client sends; the scripts' own calls come with source "lua" and are left out.
    const base = new Redis((await server()).url);
    const monitor = await base.monitor();
    const sent: string[] = [];
    monitor.on('monitor', (_time: string, args: string[], source: string) => {
      if (source !== 'lua' && args.some((a) => a.startsWith('roundtrips:') && a.includes('192.0.2.'))) sent.push(String(args[0]).toLowerCase());
    });
    try {
      const now = Date.now();
      const s = await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: true }, now);
      store.finish('192.0.2.0/24', 'delivered', now, s.slot);
      s.slot?.release();
      const look = await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: false }, now);
      await waitFor(() => sent.length >= 3, { what: 'three commands on MONITOR', detail: () => sent.join(' ') });
      // Room for a stray fourth to show up.
      await sleep(50);
      assert.equal(look.rate.concurrent, 0, 'the slot was released');
      assert.equal(look.reputation.good, 1, 'the outcome was recorded');
      // The session: connect and finish; the third is the look. (EVAL instead of EVALSHA only after a script-cache flush.)
      assert.deepEqual(sent, ['evalsha', 'evalsha', 'evalsha']);
    } finally {
      monitor.disconnect();
      base.disconnect();
    }
  });

  let fallbacksBefore = 0;
  test('200 concurrent operations use one client connection; close() quits it', async (t) => {
    const store = await makeStore(t, { connectionName: 'one-connection-test' });
    if (!store || !admin) return;
    fallbacksBefore = await counter('smtp_tarpit_store_fallbacks_total', {});
    const now = Date.now();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        i % 2 === 0 ? store.connect({ client: `10.0.${i}.1`, group: `10.0.${i}.0/24`, count: true }, now) : store.harvest(`10.0.${i}.0/24`, 600, now),
      ),
    );
    assert.equal(results.length, 200);
    assert.equal(await counter('smtp_tarpit_store_fallbacks_total', {}), fallbacksBefore, 'all answered by Redis');
    const named = async (): Promise<string[]> =>
      String(await admin!.client('LIST'))
        .split('\n')
        .filter((line) => / name=one-connection-test /.test(line));
    assert.equal((await named()).length, 1);
    await store.close();
    await waitFor(async () => (await named()).length === 0, { what: 'the connection closed' }).catch(() => undefined);
    assert.equal((await named()).length, 0, 'closed');
    // A closed store still answers (from memory): never a reject.
    assert.equal((await store.connect({ client: '192.0.2.1', group: 'g', count: true }, now)).rate.concurrent, 1);
  });

  test('Redis stops answering (paused): calls answer from memory within the timeout, counted, health degraded', async (t) => {
    const warnings: unknown[] = [];
    const logger = { warn: (...args: unknown[]) => void warnings.push(args), info: () => undefined } as unknown as StoreLogger;
    const store = await makeStore(t, { timeout: 100, logger });
    if (!store) return;
    const redis = await server();
    const fallbacks = await counter('smtp_tarpit_store_fallbacks_total', { operation: 'connect' });
    const timeouts = await counter('smtp_tarpit_store_operations_total', { store: 'redis', operation: 'connect', result: 'timeout' });
    process.kill(redisPid(redis), 'SIGSTOP');
    try {
      for (let i = 0; i < 3; i++) {
        const start = performance.now();
        const state = await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: true }, Date.now());
        const elapsed = performance.now() - start;
        // A stopped Redis never answers, so any answer at all is the timeout's doing: the bound only
        // catches a much longer wait, and leaves a loaded machine seconds of room.
        assert.ok(elapsed < 5_000, `answered in ${elapsed.toFixed(0)} ms`);
        assert.equal(state.rate.concurrent, i + 1, 'the local store counts');
      }
      assert.equal(store.health().degraded, true);
      assert.match(store.health().reason ?? '', /timed out/);
      assert.equal((await counter('smtp_tarpit_store_fallbacks_total', { operation: 'connect' })) - fallbacks, 3);
      assert.equal((await counter('smtp_tarpit_store_operations_total', { store: 'redis', operation: 'connect', result: 'timeout' })) - timeouts, 3);
      assert.equal(warnings.length, 1, 'the outage is logged once');
    } finally {
      process.kill(redisPid(redis), 'SIGCONT');
    }
  });

  test('Redis stopped and restarted: memory answers at once, then Redis is used again', async (t) => {
    const infos: unknown[] = [];
    const warnings: unknown[] = [];
    const logger = { warn: (...args: unknown[]) => void warnings.push(args), info: (...args: unknown[]) => void infos.push(args) } as unknown as StoreLogger;
    // A timeout far above the bound below: "without waiting" then means not waiting for it.
    const store = await makeStore(t, { timeout: 30_000, logger, backoff: { initial: 20, max: 200 }, prefix: 'restart:' });
    if (!store || !admin) return;
    const redis = await server();
    const now = Date.now();
    const held = await store.connect({ client: '192.0.2.9', group: '192.0.2.0/24', count: true }, now);
    await redis.stop();
    try {
      await waitFor(() => store.health().degraded, { what: 'degraded after the stop' }).catch(() => undefined);
      assert.equal(store.health().degraded, true);
      assert.equal(await gauge('smtp_tarpit_store_up'), 0);
      const fallbacks = await counter('smtp_tarpit_store_fallbacks_total', {});
      const memoryOps = await counter('smtp_tarpit_store_operations_total', { store: 'memory' });
      const start = performance.now();
      const state = await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: true }, now);
      await store.allowlist({ client: '192.0.2.1', reason: 'during the outage', ttl: 600, deferred: true }, now);
      assert.equal(await store.greylist({ network: 'n', sender: 's', recipient: 'r' }, { minDelay: 1, pendingExpiry: 60, passedExpiry: 60 }, now), 'new');
      assert.equal(await store.harvest('192.0.2.0/24', 600, now), 1);
      const elapsed = performance.now() - start;
      assert.ok(elapsed < 10_000, `four calls answered in ${elapsed.toFixed(1)} ms, without waiting`);
      assert.equal(state.rate.concurrent, 1, 'counted by the local store');
      assert.equal((await store.connect({ client: '192.0.2.1', group: 'g', count: false }, now)).allowlist.address !== undefined, true, 'learnt locally');
      // A slot taken during the outage goes back to the local store.
      store.finish('192.0.2.0/24', 'bad', now, state.slot);
      assert.equal(store.local.connect({ client: 'x', group: '192.0.2.0/24', count: false }, now).rate.concurrent, 0);
      // The Redis slot from before the outage cannot be released now: no throw, no reject.
      held.slot?.release();
      assert.ok((await counter('smtp_tarpit_store_fallbacks_total', {})) - fallbacks >= 5);
      assert.equal(await counter('smtp_tarpit_store_operations_total', { store: 'memory' }), memoryOps, 'fallback answers are counted as redis/fallback only, not again as memory/ok');
      assert.equal(warnings.length, 1, 'logged once');
    } finally {
      await redis.start();
    }
    await ready(store);
    assert.equal(infos.length, 1, 'the recovery is logged');
    assert.equal(await gauge('smtp_tarpit_store_up'), 1);
    await store.allowlist({ client: '192.0.2.77', reason: 'after the restart', ttl: 600, deferred: true }, Date.now());
    const viaOther = new Redis(redis.url);
    try {
      assert.match((await viaOther.get('restart:allow:192.0.2.77')) ?? '', /after the restart/, 'written to Redis, not memory');
      assert.equal(await viaOther.get('restart:allow:192.0.2.1'), null, 'what was learnt locally stays local');
    } finally {
      viaOther.disconnect();
    }
    assert.equal(store.health().degraded, false);
  });

});


function redisPid(redis: RedisServer): number {
  const pid = redis.pid;
  if (pid === undefined) throw new Error('redis-server not running');
  return pid;
}

test('a store whose Redis never answers serves from memory from the start, logs once, closes cleanly', async () => {
  const warnings: unknown[] = [];
  const logger = { warn: (...args: unknown[]) => void warnings.push(args), info: () => undefined } as unknown as StoreLogger;
  // Port 1 on loopback: nothing listens there, connects are refused at once.
  // A timeout far above the bound below: "no waiting" then means not waiting for it.
  const store = new RedisStore({ url: 'redis://127.0.0.1:1', logger, backoff: { initial: 10, max: 50 }, timeout: 30_000 });
  try {
    const start = performance.now();
    const first = await store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: true }, Date.now());
    const second = await store.connect({ client: '192.0.2.2', group: '192.0.2.0/24', count: true }, Date.now());
    assert.ok(performance.now() - start < 10_000, 'no waiting for a connection');
    assert.deepEqual([first.rate.concurrent, second.rate.concurrent], [1, 2]);
    // The first refused connect is logged; then several more reconnects, which must not be.
    await waitFor(() => warnings.length > 0, { what: 'the outage logged' }).catch(() => undefined);
    await sleep(200);
    assert.equal(store.health().degraded, true);
    assert.equal(warnings.length, 1, `one log line for the outage, not one per reconnect: ${JSON.stringify(warnings)}`);
  } finally {
    await store.close();
  }
});
