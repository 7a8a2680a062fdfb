/**
 * The behaviour both state stores owe the policy (src/state/store.ts), as one
 * suite run against each (memory-store.test.ts, redis-store.test.ts): the
 * point of two stores behind one interface is that the engine cannot tell
 * them apart, so every answer here must be the same from both.
 *
 * Time is the `now` passed to each call, a fake clock starting at a whole
 * minute (bucket boundaries); Redis keys still expire on the server's real
 * clock, so the TTL tests run on real time with a short TTL, and the fake
 * clock never moves past a key's real TTL.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { registry } from '../../src/metrics/registry.js';
import type { GreylistSettings, StateStore } from '../../src/state/store.js';
import type { TestContext } from '../helpers/require-tool.js';
import { waitFor } from '../helpers/wait-for.js';

/** A fresh, empty store for one test, or undefined when the test must skip (no redis-server locally). */
export type StoreFactory = (t: TestContext) => Promise<StateStore | undefined>;

/** A whole minute in the near future: on every rate (5 s) and harvest bucket boundary. */
function minute(): number {
  return Math.ceil(Date.now() / 60_000) * 60_000 + 60_000;
}

const S = 1000;
/**
 * Seconds, for the TTL tests on real time: the entry must still be there on the
 * next call, which a loaded machine can delay by a second or more; its expiry is
 * then awaited by polling, not by sleeping a fixed time.
 */
const SHORT_TTL = 2;
const GREY: GreylistSettings = { minDelay: 60, pendingExpiry: 3600, passedExpiry: 86_400 };

export function storeContract(name: string, make: StoreFactory): void {
  const each = (title: string, body: (store: StateStore) => Promise<void>): void => {
    test(`${name}: ${title}`, async (t) => {
      const store = await make(t);
      if (store === undefined) return;
      try {
        await body(store);
      } finally {
        await store.close();
      }
    });
  };

  each('allowlist: a client is remembered for its TTL, then forgotten', async (store) => {
    const q = { client: '192.0.2.7', group: '192.0.2.0/24', count: false };
    assert.equal((await store.connect(q, Date.now())).allowlist.address !== undefined, false);
    const written = Date.now();
    await store.allowlist({ client: '192.0.2.7', reason: 'survived the hold', ttl: SHORT_TTL, deferred: true }, written);
    assert.equal((await store.connect(q, Date.now())).allowlist.address !== undefined, true);
    assert.equal((await store.connect({ ...q, client: '192.0.2.8' }, Date.now())).allowlist.address !== undefined, false, 'exact address, not the group');
    await waitFor(async () => (await store.connect(q, Date.now())).allowlist.address === undefined, { what: `expiry after ${SHORT_TTL} s` });
    assert.ok(Date.now() - written >= SHORT_TTL * S - 50, 'not before its TTL');
  });

  each('allowlist: an entry keeps the time it was first written; connect gives its time and whether the client was deferred', async (store) => {
    const t0 = minute();
    const q = { client: '192.0.2.7', group: '192.0.2.0/24', count: false };
    assert.deepEqual(await store.allowlist({ client: '192.0.2.7', reason: 'survived', ttl: 600, deferred: true }, t0), { address: 'added' });
    assert.deepEqual(await store.allowlist({ client: '192.0.2.7', reason: 'survived again', ttl: 600, deferred: false }, t0 + 30 * S), { address: 'kept' });
    assert.deepEqual((await store.connect(q, t0 + 40 * S)).allowlist, { address: { since: t0, deferred: true }, network: undefined });
    await store.allowlist({ client: '192.0.2.8', reason: 'greet wait', ttl: 600, deferred: false }, t0);
    assert.deepEqual((await store.connect({ ...q, client: '192.0.2.8' }, t0)).allowlist.address, { since: t0, deferred: false });
  });

  each('allowlist: the same message deferred again restarts the address\'s pause; the next message keeps it; the network never restarts', async (store) => {
    const t0 = minute();
    const net = { key: '192.0.2.0/24', ttl: 600, reputationGroup: '192.0.2.0/24' };
    const write = (message: string | undefined, at: number) => store.allowlist({ client: '192.0.2.7', reason: 'survived', ttl: 600, deferred: true, message, network: net }, at);
    const q = { client: '192.0.2.7', group: '192.0.2.0/24', network: '192.0.2.0/24', count: false };
    assert.deepEqual(await write('aaaa1111', t0), { address: 'added', network: 'added' });
    assert.deepEqual(await write('bbbb2222', t0 + 10 * S), { address: 'kept', network: 'kept' }, 'its next queued message');
    assert.equal((await store.connect(q, t0 + 11 * S)).allowlist.address?.since, t0);
    assert.deepEqual(await write('aaaa1111', t0 + 20 * S), { address: 'restarted', network: 'kept' }, 'the first message again, too soon: its pause starts over');
    assert.equal((await store.connect(q, t0 + 21 * S)).allowlist.address?.since, t0 + 20 * S);
    assert.equal((await store.connect(q, t0 + 21 * S)).allowlist.network?.since, t0, 'the network keeps its time');
    await store.allowlist({ client: '192.0.2.8', reason: 'survived', ttl: 600, deferred: true, message: 'cccc3333' }, t0);
    assert.deepEqual(await store.allowlist({ client: '192.0.2.8', reason: 'survived', ttl: 600, deferred: true, message: 'cccc3333' }, t0 + 5 * S), { address: 'restarted' });
    assert.deepEqual((await store.connect({ ...q, client: '192.0.2.8' }, t0 + 6 * S)).allowlist, { address: { since: t0 + 5 * S, deferred: true }, network: { since: t0, deferred: true } });
    assert.deepEqual(await store.allowlist({ client: '192.0.2.8', reason: 'survived', ttl: 600, deferred: true }, t0 + 7 * S), { address: 'kept' }, 'no message named: kept');
    // Restart only: the same message restarts, nothing is ever added, no network written.
    const only = (client: string, message: string, at: number) => store.allowlist({ client, reason: 'held again', ttl: 600, deferred: true, message, restartOnly: true, network: { key: '203.0.113.0/24', ttl: 600, reputationGroup: '203.0.113.0/24' } }, at);
    assert.deepEqual(await only('192.0.2.8', 'cccc3333', t0 + 8 * S), { address: 'restarted' });
    assert.deepEqual(await only('192.0.2.8', 'dddd4444', t0 + 9 * S), { address: 'kept' });
    assert.deepEqual(await only('203.0.113.9', 'cccc3333', t0 + 9 * S), { address: 'kept' });
    assert.deepEqual((await store.connect({ client: '203.0.113.9', group: '203.0.113.0/24', network: '203.0.113.0/24', count: false }, t0 + 10 * S)).allowlist, { address: undefined, network: undefined });
    assert.equal((await store.connect({ ...q, client: '192.0.2.8' }, t0 + 10 * S)).allowlist.address?.since, t0 + 8 * S);
    // A restart withdraws the pass the client's network earned: its neighbours are not vouched for by a hammering bot.
    const dropped = await store.allowlist({ client: '192.0.2.7', reason: 'held again', ttl: 600, deferred: true, message: 'aaaa1111', restartOnly: true, network: net }, t0 + 11 * S);
    assert.deepEqual(dropped, { address: 'restarted', network: 'dropped' });
    assert.equal((await store.connect(q, t0 + 12 * S)).allowlist.network, undefined);
  });

  each('allowlist: a survivor\'s network is remembered with its own TTL, and read only when connect asks for it', async (store) => {
    // Real time here: the memory store expires by the calls' clock, Redis by its own.
    const t0 = Date.now();
    const net = { key: '198.51.100.0/24', ttl: SHORT_TTL, reputationGroup: '198.51.100.0/24' };
    const done = await store.allowlist({ client: '198.51.100.1', reason: 'survived', ttl: 600, deferred: true, network: net }, t0);
    assert.deepEqual(done, { address: 'added', network: 'added' });
    const neighbour = { client: '198.51.100.2', group: '198.51.100.0/24', count: false };
    assert.deepEqual((await store.connect(neighbour, t0)).allowlist, { address: undefined, network: undefined }, 'not asked');
    assert.deepEqual((await store.connect({ ...neighbour, network: '198.51.100.0/24' }, t0 + 1)).allowlist.network, { since: t0, deferred: true });
    assert.equal((await store.connect({ ...neighbour, network: '203.0.113.0/24' }, t0)).allowlist.network, undefined, 'another network');
    const again = await store.allowlist({ client: '198.51.100.3', reason: 'survived', ttl: 600, deferred: true, network: net }, t0 + 2);
    assert.deepEqual(again, { address: 'added', network: 'kept' });
    // TTLs run on the stores' real clocks (Redis expires keys itself).
    await waitFor(async () => (await store.connect({ ...neighbour, network: '198.51.100.0/24' }, Date.now())).allowlist.network === undefined, {
      what: `the network's expiry after its ${SHORT_TTL} s`,
    });
    assert.notEqual((await store.connect({ ...neighbour, client: '198.51.100.1' }, Date.now())).allowlist.address, undefined, 'the address keeps its 600 s');
  });

  each('allowlist: no network is remembered while its bad sessions (at least one) outnumber its delivered ones', async (store) => {
    store.configure({ reputationHalfLife: 86_400 });
    const t0 = minute();
    const g = '203.0.113.0/24';
    const write = (client: string, at: number) => store.allowlist({ client, reason: 'survived', ttl: 600, deferred: true, network: { key: g, ttl: 600, reputationGroup: g } }, at);
    store.finish(g, 'bad', t0, undefined);
    store.finish(g, 'bad', t0, undefined);
    assert.deepEqual(await write('203.0.113.1', t0 + S), { address: 'added', network: 'bad-reputation' }, '2 bad, 0 delivered');
    store.finish(g, 'delivered', t0 + 2 * S, undefined);
    store.finish(g, 'delivered', t0 + 2 * S, undefined);
    assert.deepEqual(await write('203.0.113.2', t0 + 3 * S), { address: 'added', network: 'added' }, '2 bad, 2 delivered: not outnumbered');
    const clean = '192.0.2.0/24';
    store.finish(clean, 'bad', t0 - 86_400 * 2 * S, undefined);
    assert.deepEqual(
      await store.allowlist({ client: '192.0.2.9', reason: 'survived', ttl: 600, deferred: true, network: { key: clean, ttl: 600, reputationGroup: clean } }, t0),
      { address: 'added', network: 'added' },
      'one bad session two half-lives ago is a quarter: less than one whole',
    );
  });

  each('rate: concurrency counts up, release gives back once, per-minute slides out', async (store) => {
    const t0 = minute();
    const g = '198.51.100.0/24';
    const open = async (client: string, at: number) => store.connect({ client, group: g, count: true }, at);
    const a = await open('198.51.100.1', t0);
    const b = await open('198.51.100.2', t0 + 1 * S);
    const c = await open('198.51.100.3', t0 + 2 * S);
    assert.deepEqual([a.rate, b.rate, c.rate], [
      { concurrent: 1, perMinute: 1 },
      { concurrent: 2, perMinute: 2 },
      { concurrent: 3, perMinute: 3 },
    ]);
    assert.ok(a.slot && b.slot && c.slot, 'counted sessions get a slot');
    const look = async (at: number) => (await store.connect({ client: '198.51.100.9', group: g, count: false }, at)).rate;
    assert.deepEqual(await look(t0 + 3 * S), { concurrent: 3, perMinute: 3 }, 'looking counts nothing');
    assert.equal((await store.connect({ client: 'x', group: g, count: false }, t0)).slot, undefined, 'no slot when not counted');
    a.slot.release();
    a.slot.release();
    assert.deepEqual(await look(t0 + 3 * S), { concurrent: 2, perMinute: 3 }, 'release counts once');
    store.finish(g, 'neutral', t0 + 4 * S, b.slot);
    b.slot.release();
    assert.deepEqual(await look(t0 + 4 * S), { concurrent: 1, perMinute: 3 }, 'finish releases the slot it is given, once');
    // Another group is counted apart.
    assert.deepEqual((await store.connect({ client: '203.0.113.1', group: '203.0.113.0/24', count: true }, t0 + 4 * S)).rate, { concurrent: 1, perMinute: 1 });
    const d = await open('198.51.100.4', t0 + 30 * S);
    assert.deepEqual(d.rate, { concurrent: 2, perMinute: 4 });
    assert.deepEqual(await look(t0 + 59_999), { concurrent: 2, perMinute: 4 }, 'still within the minute');
    assert.deepEqual(await look(t0 + 60 * S), { concurrent: 2, perMinute: 1 }, 'the first three slid out at 60 s');
    assert.deepEqual(await look(t0 + 90 * S), { concurrent: 2, perMinute: 0 }, 'open sessions outlast the minute');
    c.slot.release();
    store.finish(g, 'neutral', t0 + 91 * S, d.slot);
    assert.deepEqual(await look(t0 + 91 * S), { concurrent: 0, perMinute: 0 });
  });

  each('harvest: counts rejected recipients within the window', async (store) => {
    const t0 = minute();
    const g = '192.0.2.0/24';
    assert.deepEqual(
      [await store.harvest(g, 60, t0), await store.harvest(g, 60, t0 + 1 * S), await store.harvest(g, 60, t0 + 2 * S)],
      [1, 2, 3],
    );
    assert.equal(await store.harvest('198.51.100.0/24', 60, t0), 1, 'per group');
    assert.equal(await store.harvest(g, 60, t0 + 30 * S), 4);
    // 60 s in buckets of 6 s: the window is the current bucket and the nine before it.
    assert.equal(await store.harvest(g, 60, t0 + 54 * S), 5, 'at 54 s (bucket 9) the first bucket still counts');
    assert.equal(await store.harvest(g, 60, t0 + 61 * S), 3, 'at 61 s (bucket 10) the first three slid out');
    assert.equal(await store.harvest(g, 60, t0 + 130 * S), 1, 'all earlier ones out');
  });

  each('greylist: new, early, passed, then the network is allowlisted', async (store) => {
    const counted = await greylistCounts();
    const t0 = minute();
    const k = { network: '192.0.2.0/24', sender: 'a@example.org', recipient: 'b@example.net' };
    assert.deepEqual(await store.peekGreylist(k, GREY, t0), { state: 'unknown' });
    assert.equal(await store.greylist(k, GREY, t0), 'new');
    assert.deepEqual(await store.peekGreylist(k, GREY, t0 + 1 * S), { state: 'pending', since: t0 });
    assert.equal(await store.greylist(k, GREY, t0 + 30 * S), 'early');
    assert.equal(await store.greylist(k, GREY, t0 + 59_999), 'early', 'early resets nothing: the delay counts from the first try');
    assert.equal(await store.greylist({ ...k, recipient: 'c@example.net' }, GREY, t0 + 60 * S), 'new', 'another triplet is new');
    assert.equal(await store.greylist(k, GREY, t0 + 60 * S), 'passed');
    assert.deepEqual(await store.peekGreylist(k, GREY, t0 + 61 * S), { state: 'passed', since: t0 + 60 * S });
    assert.equal(await store.greylist(k, GREY, t0 + 61 * S), 'allowlisted');
    // The network passed: its other triplets, the one still pending included, go through.
    assert.equal(await store.greylist({ ...k, recipient: 'c@example.net' }, GREY, t0 + 62 * S), 'allowlisted');
    assert.equal(await store.greylist({ ...k, sender: 'z@example.com' }, GREY, t0 + 63 * S), 'allowlisted');
    // A neighbour network is not.
    assert.equal(await store.greylist({ ...k, network: '192.0.3.0/24' }, GREY, t0 + 63 * S), 'new');
    const now = await greylistCounts();
    const delta = Object.fromEntries(Object.entries(now).map(([outcome, n]) => [outcome, n - (counted[outcome] ?? 0)]));
    assert.deepEqual(delta, { new: 3, early: 2, passed: 1, allowlisted: 3, expired: 0 }, 'each decision counted once (peeks not at all)');
  });

  each('greylist: a retry after the pending expiry starts again (expired)', async (store) => {
    const t0 = minute();
    const k = { network: '2001:db8:1:2::/64', sender: '', recipient: 'postmaster@example.net' };
    assert.equal(await store.greylist(k, GREY, t0), 'new');
    assert.deepEqual(await store.peekGreylist(k, GREY, t0 + 3600 * S), { state: 'unknown' }, 'a pending entry past its expiry is not pending');
    assert.equal(await store.greylist(k, GREY, t0 + 3600 * S), 'expired');
    assert.equal(await store.greylist(k, GREY, t0 + 3630 * S), 'early', 'the delay counts from the new first try');
    assert.equal(await store.greylist(k, GREY, t0 + 3660 * S), 'passed');
    // Sender and recipient cannot be shifted into each other (the key is unambiguous).
    const a = { network: 'n', sender: 'x|y', recipient: 'z' };
    const b = { network: 'n', sender: 'x', recipient: 'y|z' };
    assert.equal(await store.greylist(a, GREY, t0), 'new');
    assert.equal(await store.greylist(b, GREY, t0 + 61 * S), 'new');
  });

  each('reputation: bad and good sessions count, and halve every half-life', async (store) => {
    store.configure({ reputationHalfLife: 3600 });
    const t0 = minute();
    const g = '192.0.2.0/24';
    const rep = async (at: number) => (await store.connect({ client: '192.0.2.1', group: g, count: false }, at)).reputation;
    assert.deepEqual(await rep(t0), { bad: 0, good: 0 });
    store.finish(g, 'bad', t0, undefined);
    store.finish(g, 'bad', t0, undefined);
    store.finish(g, 'neutral', t0, undefined);
    const now = await rep(t0);
    assert.deepEqual(now, { bad: 2, good: 0 });
    const later = await rep(t0 + 3600 * S);
    assert.ok(Math.abs(later.bad - 1) < 1e-9, `one half-life: ${later.bad}`);
    store.finish(g, 'delivered', t0 + 3600 * S, undefined);
    const after = await rep(t0 + 7200 * S);
    assert.ok(Math.abs(after.bad - 0.5) < 1e-9 && Math.abs(after.good - 0.5) < 1e-9, `two half-lives: ${JSON.stringify(after)}`);
    assert.deepEqual(await store.connect({ client: '198.51.100.1', group: '198.51.100.0/24', count: false }, t0), {
      allowlist: { address: undefined, network: undefined },
      rate: { concurrent: 0, perMinute: 0 },
      reputation: { bad: 0, good: 0 },
    }, 'per group');
    store.configure({ reputationHalfLife: 7200 });
    const slower = await rep(t0 + 7200 * S);
    assert.ok(Math.abs(slower.bad - 2 ** -0.5) < 1e-9, `a new half-life applies to stored counts: ${slower.bad}`);
  });

  each('health: healthy, and close() resolves', async (store) => {
    // A fresh store may still be connecting: give it the moment it needs.
    await waitFor(() => !store.health().degraded, { what: 'a healthy store', detail: () => String(store.health().reason) }).catch(() => undefined);
    assert.equal(store.health().degraded, false, store.health().reason);
  });
}

/** smtp_tarpit_greylist_total by outcome, every outcome present. */
async function greylistCounts(): Promise<Record<string, number>> {
  const metric = await registry.getSingleMetric('smtp_tarpit_greylist_total')?.get();
  const counts: Record<string, number> = { new: 0, early: 0, passed: 0, allowlisted: 0, expired: 0 };
  for (const v of metric?.values ?? []) counts[String(v.labels.outcome)] = v.value;
  return counts;
}
