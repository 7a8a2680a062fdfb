import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { MemoryStore } from '../../src/state/memory-store.js';
import { storeContract } from './store-contract.js';

storeContract('memory', () => Promise.resolve(new MemoryStore()));

describe('MemoryStore', () => {
  const t0 = 1_800_000_000_000;

  test('answers with plain values, never promises (the connect path stays synchronous)', () => {
    const store = new MemoryStore();
    const q = { client: '192.0.2.1', group: '192.0.2.0/24', count: true };
    const grey = { network: 'n', sender: 's', recipient: 'r' };
    const settings = { minDelay: 1, pendingExpiry: 2, passedExpiry: 3 };
    for (const value of [
      store.connect(q, t0),
      store.allowlist({ client: '192.0.2.1', reason: 'r', ttl: 60, deferred: true }, t0),
      store.harvest('g', 60, t0),
      store.greylist(grey, settings, t0),
      store.peekGreylist(grey, settings, t0),
    ]) {
      assert.ok(!(value instanceof Promise));
    }
  });

  test('every part is bounded by its size option', () => {
    const store = new MemoryStore({ maxGroups: 10, greylistMaxEntries: 10, allowlistCache: { ttl: 3600, maxEntries: 10 } });
    const settings = { minDelay: 1, pendingExpiry: 3600, passedExpiry: 3600 };
    for (let i = 0; i < 100; i++) {
      const group = `10.0.${i}.0/24`;
      store.connect({ client: `10.0.${i}.1`, group, count: true }, t0 + i).slot?.release();
      store.allowlist({ client: `10.0.${i}.1`, reason: 'r', ttl: 3600, deferred: true }, t0 + i);
      store.harvest(group, 600, t0 + i);
      store.finish(group, 'bad', t0 + i);
      store.greylist({ network: group, sender: `s${i}`, recipient: 'r' }, settings, t0 + i);
    }
    const sizes = store.sizes;
    assert.deepEqual(sizes, { allowlist: 10, rates: 10, harvest: 10, greylist: 10, reputation: 10 });
  });

  test('configure() resizes the allowlist cache and keeps the entries that fit', () => {
    const store = new MemoryStore({ allowlistCache: { ttl: 3600, maxEntries: 100 } });
    for (let i = 0; i < 20; i++) store.allowlist({ client: `192.0.2.${i}`, reason: 'r', ttl: 3600, deferred: true }, t0 + i);
    store.configure({ allowlistCache: { ttl: 3600, maxEntries: 5 } });
    assert.equal(store.sizes.allowlist, 5);
    // The most recent stay.
    assert.equal(store.connect({ client: '192.0.2.19', group: 'g', count: false }, t0 + 100).allowlist.address !== undefined, true);
    assert.equal(store.connect({ client: '192.0.2.0', group: 'g', count: false }, t0 + 100).allowlist.address !== undefined, false);
    assert.equal(store.peekAllowlist('192.0.2.19', t0 + 100)?.since, t0 + 19);
  });

  test('looking (count: false) neither counts a lookup nor refreshes an entry', () => {
    const store = new MemoryStore({ allowlistCache: { ttl: 3600, maxEntries: 2 } });
    store.allowlist({ client: '192.0.2.1', reason: 'r', ttl: 3600, deferred: true }, t0);
    store.allowlist({ client: '192.0.2.2', reason: 'r', ttl: 3600, deferred: true }, t0 + 1);
    // Looking at .1 must not make it the most recent: adding .3 pushes .1 out.
    store.connect({ client: '192.0.2.1', group: 'g', count: false }, t0 + 2);
    store.allowlist({ client: '192.0.2.3', reason: 'r', ttl: 3600, deferred: true }, t0 + 3);
    assert.equal(store.peekAllowlist('192.0.2.1', t0 + 4), undefined);
    assert.notEqual(store.peekAllowlist('192.0.2.2', t0 + 4), undefined);
  });
});

test('after a reload, sessions on the old policy neither re-time the allowlist cache nor empty the harvest counts', () => {
  const store = new MemoryStore();
  store.configure({ allowlistCache: { ttl: 600, maxEntries: 100 }, harvestWindow: 600 });
  const t0 = Date.now();
  store.allowlist({ client: '192.0.2.1', reason: 'new policy', ttl: 600, deferred: true }, t0);
  assert.equal(store.harvest('192.0.2.0/24', 600, t0), 1);
  // A session still on the old policy (TTL 60 s, window 60 s) finishes after the reload.
  store.allowlist({ client: '192.0.2.2', reason: 'old policy', ttl: 60, deferred: true }, t0);
  assert.equal(store.harvest('192.0.2.0/24', 60, t0 + 1000), 2, 'counted in the configured window, not emptied by the old one');
  assert.equal(store.harvest('192.0.2.0/24', 600, t0 + 2000), 3, 'and the next new-policy count goes on from there');
  const later = store.connect({ client: '192.0.2.1', group: '192.0.2.0/24', count: false }, t0 + 120_000);
  assert.equal(later.allowlist.address !== undefined, true, 'the new-policy entry kept its 600 s');
  assert.equal(store.connect({ client: '192.0.2.2', group: '192.0.2.0/24', count: false }, t0 + 120_000).allowlist.address !== undefined, false, 'the old-policy entry had its own 60 s');
});
