import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseIp } from '../../src/core/ip.js';
import { registry } from '../../src/metrics/registry.js';
import { AllowlistCache } from '../../src/state/allowlist-cache.js';

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

describe('AllowlistCache', () => {
  test('remembers a client by exact address, IPv4-mapped folded and canonical', () => {
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 100, now: clock().now });
    assert.equal(cache.has('192.0.2.1'), false);
    cache.add('::ffff:192.0.2.1', 'sat out the first-contact hold');
    assert.equal(cache.has('192.0.2.1'), true);
    assert.equal(cache.has('::ffff:192.0.2.1'), true);
    assert.equal(cache.has('::FFFF:c000:201'), true);
    assert.equal(cache.has('192.0.2.2'), false, 'exact address, not the network');
    assert.equal(cache.has(parseIp('::ffff:192.0.2.1') ?? '-'), true, 'an address the caller parsed');
    cache.add('2001:DB8:0:0::25', 'x');
    assert.equal(cache.has('2001:db8::25'), true);
    assert.equal(cache.has(parseIp('2001:db8:0::25') ?? '-'), true);
    assert.equal(cache.size, 2);
    assert.deepEqual(cache.peek('192.0.2.1'), { reason: 'sat out the first-contact hold', since: 1_000_000 });
  });

  test('has() answers synchronously: no promise per lookup (default clock: wall time)', () => {
    const cache = new AllowlistCache({ ttl: 60, maxEntries: 10 });
    const before = Date.now();
    cache.add('192.0.2.1', 'x');
    const since = cache.peek('192.0.2.1')?.since ?? 0;
    assert.ok(since >= before && since <= Date.now(), String(since));
    assert.equal(cache.has('192.0.2.1'), true);
    assert.equal(cache.hasKey('192.0.2.1'), true, 'a canonical key is looked up as it is');
    assert.equal(cache.hasKey('::ffff:192.0.2.1'), false, 'hasKey does not fold: the caller gives the canonical key');
  });

  test('entries expire after the TTL; adding again restarts it', () => {
    const c = clock();
    const cache = new AllowlistCache({ ttl: 60, maxEntries: 10, now: c.now });
    cache.add('192.0.2.1', 'x');
    cache.add('192.0.2.2', 'x');
    c.advance(59_000);
    cache.add('192.0.2.2', 'again');
    c.advance(1_001);
    assert.equal(cache.has('192.0.2.1'), false);
    assert.equal(cache.has('192.0.2.2'), true);
    assert.equal(cache.peek('192.0.2.2')?.reason, 'again');
    c.advance(59_000);
    assert.equal(cache.has('192.0.2.2'), false);
  });

  test('bounded: the least recently seen client goes first', () => {
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 2, now: clock().now });
    cache.add('192.0.2.1', 'x');
    cache.add('192.0.2.2', 'x');
    assert.equal(cache.has('192.0.2.1'), true); // .1 is now the more recent
    cache.add('192.0.2.3', 'x');
    assert.equal(cache.size, 2);
    assert.equal(cache.has('192.0.2.2'), false);
    assert.equal(cache.has('192.0.2.1'), true);
    assert.equal(cache.has('192.0.2.3'), true);
  });

  test('resize keeps entries, their age and their order', () => {
    const c = clock();
    const cache = new AllowlistCache({ ttl: 3600, maxEntries: 10, now: c.now });
    cache.add('192.0.2.1', 'oldest');
    c.advance(1_000_000);
    cache.add('192.0.2.2', 'middle');
    c.advance(1_000_000);
    cache.add('192.0.2.3', 'newest');
    cache.add('192.0.2.4', 'newest too');
    assert.equal(cache.has('192.0.2.2'), true); // most recently used now

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
    assert.equal(cache.has('192.0.2.2'), true);
    c.advance(1_001);
    assert.equal(cache.has('192.0.2.2'), false, 'expires 1,800 s after it was added, not after the resize');
    assert.equal(cache.has('192.0.2.4'), true);

    // Longer TTL and more room: the same entries, now living longer.
    cache.resize(7200, 100);
    c.advance(3_000_000);
    assert.equal(cache.has('192.0.2.4'), true);
    cache.resize(7200, 100); // unchanged: a no-op
    assert.equal(cache.size, 1);
  });

  test('counts hits and misses, and reports its size', async () => {
    const hits = await metric('smtp_tarpit_allowlist_cache_total', { result: 'hit' });
    const misses = await metric('smtp_tarpit_allowlist_cache_total', { result: 'miss' });
    const c = clock();
    const cache = new AllowlistCache({ ttl: 60, maxEntries: 3, now: c.now });
    cache.has('192.0.2.1');
    cache.add('192.0.2.1', 'x');
    cache.has('192.0.2.1');
    cache.has('::ffff:192.0.2.1');
    cache.peek('192.0.2.1'); // not a lookup
    assert.equal((await metric('smtp_tarpit_allowlist_cache_total', { result: 'hit' })) - hits, 2);
    assert.equal((await metric('smtp_tarpit_allowlist_cache_total', { result: 'miss' })) - misses, 1);

    cache.add('192.0.2.2', 'x');
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), 2);
    for (const a of ['192.0.2.3', '192.0.2.4', '192.0.2.5']) cache.add(a, 'x');
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), 3);
    c.advance(60_001);
    cache.has('192.0.2.5'); // expired: removed on lookup
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), 2);
    cache.resize(60, 1);
    assert.equal(await metric('smtp_tarpit_allowlist_cache_entries'), cache.size);
  });
});
