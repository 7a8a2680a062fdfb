import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { registry } from '../../src/metrics/registry.js';
import { RateLimiter } from '../../src/state/rate-limiter.js';

/** A settable clock; starts far from 0 because lru-cache treats a start time of 0 as "no TTL". */
function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

async function evictions(store: string): Promise<number> {
  const metric = await registry.getSingleMetric('smtp_tarpit_state_evictions_total')?.get();
  return metric?.values.find((v) => v.labels.store === store)?.value ?? 0;
}

describe('RateLimiter', () => {
  test('counts concurrent sessions per group; release is idempotent', () => {
    const c = clock();
    const rates = new RateLimiter({ now: c.now });
    const a = rates.open('192.0.2.0/24');
    const b = rates.open('192.0.2.0/24');
    const other = rates.open('198.51.100.0/24');
    assert.deepEqual(a.snapshot, { concurrent: 1, perMinute: 1 });
    assert.deepEqual(b.snapshot, { concurrent: 2, perMinute: 2 });
    assert.deepEqual(other.snapshot, { concurrent: 1, perMinute: 1 });
    a.release();
    a.release();
    a.release();
    assert.deepEqual(rates.snapshot('192.0.2.0/24'), { concurrent: 1, perMinute: 2 });
    b.release();
    assert.deepEqual(rates.snapshot('192.0.2.0/24'), { concurrent: 0, perMinute: 2 });
    assert.deepEqual(rates.snapshot('203.0.113.0/24'), { concurrent: 0, perMinute: 0 });
  });

  test('new sessions per minute slide out after a minute', () => {
    const c = clock(1_000_000); // on a 5 s bucket boundary
    const rates = new RateLimiter({ now: c.now });
    for (let i = 0; i < 10; i++) rates.open('g').release();
    c.advance(30_000);
    for (let i = 0; i < 5; i++) rates.open('g').release();
    assert.equal(rates.snapshot('g').perMinute, 15);
    c.advance(29_999); // 59.999 s after the first ten
    assert.equal(rates.snapshot('g').perMinute, 15);
    c.advance(1); // 60 s: the first ten are out
    assert.equal(rates.snapshot('g').perMinute, 5);
    c.advance(30_000);
    assert.equal(rates.snapshot('g').perMinute, 0);
  });

  test('the window counts at least the last 55 s, never more than 60 s', () => {
    for (const offset of [0, 1_000, 2_500, 4_999]) {
      const c = clock(1_000_000 + offset);
      const rates = new RateLimiter({ now: c.now });
      rates.open('g').release();
      c.advance(55_000);
      const at55 = rates.snapshot('g').perMinute;
      c.advance(5_000);
      assert.equal(rates.snapshot('g').perMinute, 0, `offset ${offset}: gone at 60 s`);
      if (offset === 0) assert.equal(at55, 1, 'still counted at 55 s');
    }
  });

  test('a long gap clears the whole ring', () => {
    const c = clock();
    const rates = new RateLimiter({ now: c.now });
    const held = rates.open('g');
    for (let i = 0; i < 99; i++) rates.open('g').release();
    c.advance(3_600_000);
    const next = rates.open('g');
    assert.deepEqual(next.snapshot, { concurrent: 2, perMinute: 1 });
    held.release();
    next.release();
  });

  test('a group with sessions open never expires; an idle one goes after its minute', () => {
    const c = clock();
    const rates = new RateLimiter({ now: c.now });
    const held = rates.open('held');
    rates.open('idle').release();
    c.advance(10 * 60_000);
    assert.equal(rates.snapshot('held').concurrent, 1, 'a session held for 10 minutes still counts');
    assert.equal(rates.snapshot('idle').perMinute, 0);
    assert.equal(rates.size, 1, 'the idle group was dropped');
    held.release();
    c.advance(60_001);
    assert.deepEqual(rates.snapshot('held'), { concurrent: 0, perMinute: 0 });
    assert.equal(rates.size, 0);
  });

  test('bounded in groups: the least recently active goes first, and its late release is harmless', async () => {
    const c = clock();
    const before = await evictions('rate');
    const rates = new RateLimiter({ now: c.now, maxGroups: 3 });
    const first = rates.open('a');
    rates.open('b').release();
    rates.open('c').release();
    rates.open('a').release(); // a is now the most recent
    rates.open('d').release(); // evicts b
    assert.equal(rates.size, 3);
    assert.equal(rates.snapshot('b').perMinute, 0);
    assert.equal(rates.snapshot('a').concurrent, 1);
    for (const g of ['e', 'f', 'g']) rates.open(g).release(); // a goes too
    assert.equal(rates.snapshot('a').concurrent, 0);
    first.release();
    assert.equal(rates.snapshot('a').concurrent, 0);
    assert.ok(rates.size <= 3);
    assert.equal((await evictions('rate')) - before, 4);
  });

  test('memory per group does not grow with connections', () => {
    const c = clock();
    const rates = new RateLimiter({ now: c.now });
    for (let i = 0; i < 100_000; i++) {
      rates.open('g').release();
      c.advance(7);
    }
    // 700 s of 143 opens per second: the minute holds the last 55-60 s of them.
    const n = rates.snapshot('g').perMinute;
    assert.ok(n >= 7_800 && n <= 8_580, String(n));
    assert.equal(rates.size, 1);
  });
});
