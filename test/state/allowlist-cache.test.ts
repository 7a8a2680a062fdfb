import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseIp } from '../../src/core/ip.js';
import { registry } from '../../src/metrics/registry.js';
import { AllowlistCache, networkKey } from '../../src/state/allowlist-cache.js';
import { addressKey } from '../../src/state/client-group.js';

/** A settable clock; starts far from 0 because lru-cache treats a start time of 0 as "no TTL". */
function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

async function metric(name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  const value = m?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
  return value?.value ?? 0;
}

const E = (reason: string, since = 0, deferred = false) => ({ reason, since, deferred });

describe('AllowlistCache', () => {
  test('remembers a client by exact address, IPv4-mapped folded and canonical', () => {
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 100, now: clock().now });
    assert.equal(cache.get(addressKey('192.0.2.1')), undefined);
    cache.add(addressKey('::ffff:192.0.2.1'), E('sat out the first-contact hold', 1_000_000, true));
    assert.equal(cache.get(addressKey('192.0.2.1'))?.reason, 'sat out the first-contact hold');
    assert.notEqual(cache.peek('::ffff:192.0.2.1'), undefined);
    assert.notEqual(cache.peek('::FFFF:c000:201'), undefined);
    assert.equal(cache.peek('192.0.2.2'), undefined, 'exact address, not the network');
    assert.notEqual(cache.peek(parseIp('::ffff:192.0.2.1') ?? '-'), undefined, 'an address the caller parsed');
    cache.add(addressKey('2001:DB8:0:0::25'), E('x'));
    assert.notEqual(cache.peek('2001:db8::25'), undefined);
    assert.equal(cache.size, 2);
    assert.deepEqual(cache.peek('192.0.2.1'), { reason: 'sat out the first-contact hold', since: 1_000_000, deferred: true });
    assert.equal(cache.get('::ffff:192.0.2.1'), undefined, 'get() takes the canonical key as it is: the caller folds');
  });

  test('a network is an entry of its own, never confused with an address', () => {
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 100, now: clock().now });
    cache.add(networkKey('192.0.2.0/24'), E('a neighbour passed'), 60);
    assert.equal(cache.get(networkKey('192.0.2.0/24'))?.reason, 'a neighbour passed');
    assert.equal(cache.peek('192.0.2.0'), undefined);
    assert.equal(cache.get('192.0.2.0/24'), undefined, 'only under its network key');
  });

  test('an entry already there keeps its time: adding again does not push it back', () => {
    const c = clock();
    const cache = new AllowlistCache({ ttl: 60, maxEntries: 10, now: c.now });
    assert.equal(cache.add('192.0.2.1', E('first', c.now(), true)), 'added');
    c.advance(30_000);
    assert.equal(cache.add('192.0.2.1', E('again', c.now(), true)), 'kept');
    assert.deepEqual(cache.peek('192.0.2.1'), { reason: 'first', since: 1_000_000, deferred: true });
    c.advance(30_001);
    assert.equal(cache.get('192.0.2.1'), undefined, 'expired 60 s after the first add');
    assert.equal(cache.add('192.0.2.1', E('after expiry', c.now())), 'added', 'an expired entry is no entry');
  });

  test('entries expire after their TTL, the cache\'s or their own', () => {
    const c = clock();
    const cache = new AllowlistCache({ ttl: 60, maxEntries: 10, now: c.now });
    cache.add('192.0.2.1', E('x'));
    cache.add(networkKey('192.0.2.0/24'), E('x'), 10);
    c.advance(10_001);
    assert.equal(cache.get(networkKey('192.0.2.0/24')), undefined);
    assert.notEqual(cache.get('192.0.2.1'), undefined);
    c.advance(50_000);
    assert.equal(cache.get('192.0.2.1'), undefined);
  });

  test('bounded: the least recently seen entry goes first', () => {
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 2, now: clock().now });
    cache.add('192.0.2.1', E('x'));
    cache.add('192.0.2.2', E('x'));
    assert.notEqual(cache.get('192.0.2.1'), undefined); // .1 is now the more recent
    cache.add('192.0.2.3', E('x'));
    assert.equal(cache.size, 2);
    assert.equal(cache.peek('192.0.2.2'), undefined);
    assert.notEqual(cache.peek('192.0.2.1'), undefined);
    assert.notEqual(cache.peek('192.0.2.3'), undefined);
  });

  test('resize keeps entries, their age and their order; a network keeps the TTL it has left', () => {
    const c = clock();
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 10, now: c.now });
    cache.add('192.0.2.1', E('oldest', c.now()));
    c.advance(1_000_000);
    cache.add('192.0.2.2', E('middle', c.now()));
    c.advance(1_000_000);
    cache.add('192.0.2.3', E('newest', c.now()));
    cache.add('192.0.2.4', E('newest too', c.now()));
    assert.notEqual(cache.get('192.0.2.2'), undefined); // most recently used now

    // Shorter TTL: .1 (2,000 s old) is already past 1,800 s; the rest keep their age.
    cache.resize(1800, 2);
    assert.equal(cache.ttl, 1800);
    assert.equal(cache.maxEntries, 2);
    assert.equal(cache.size, 2, 'three fit the TTL, the smaller cache keeps the two most recent');
    assert.equal(cache.peek('192.0.2.1'), undefined);
    assert.equal(cache.peek('192.0.2.3'), undefined, 'least recently used of the survivors');
    assert.equal(cache.peek('192.0.2.4')?.reason, 'newest too');
    assert.equal(cache.peek('192.0.2.2')?.since, 2_000_000);
    c.advance(799_000); // .2 is 1,799 s old
    assert.notEqual(cache.get('192.0.2.2'), undefined);
    c.advance(1_001);
    assert.equal(cache.get('192.0.2.2'), undefined, 'expires 1,800 s after it was added, not after the resize');
    assert.notEqual(cache.get('192.0.2.4'), undefined);

    // Longer TTL and more room: the same entries, now living longer; a network entry keeps its own.
    cache.add(networkKey('192.0.2.0/24'), E('net', c.now()), 100);
    c.advance(40_000);
    cache.resize(7200, 100);
    c.advance(59_000);
    assert.notEqual(cache.get(networkKey('192.0.2.0/24')), undefined, '1 s left');
    c.advance(1_001);
    assert.equal(cache.get(networkKey('192.0.2.0/24')), undefined, 'its own 100 s, not the cache\'s 7,200');
    c.advance(3_000_000);
    assert.notEqual(cache.get('192.0.2.4'), undefined);
    cache.resize(7200, 100); // unchanged: a no-op
    assert.equal(cache.size, 1);
  });

  test('reports its size', async () => {
    const c = clock();
    const cache = new AllowlistCache({ ttl: 60, maxEntries: 3, now: c.now });
    cache.add('192.0.2.1', E('x'));
    cache.add('192.0.2.2', E('x'));
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), 2);
    for (const a of ['192.0.2.3', '192.0.2.4', '192.0.2.5']) cache.add(a, E('x'));
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), 3);
    c.advance(60_001);
    cache.get('192.0.2.5'); // expired: removed on lookup
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), 2);
    cache.resize(60, 1);
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), cache.size);
  });
});
