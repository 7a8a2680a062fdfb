import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { HarvestWindow } from '../../src/state/harvest-window.js';

/** A settable clock; starts far from 0 because lru-cache treats a start time of 0 as "no TTL". */
function clock(start = 6_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('HarvestWindow', () => {
  test('counts per group and returns the count including the new one', () => {
    const c = clock();
    const w = new HarvestWindow({ window: 600, now: c.now });
    assert.equal(w.add('192.0.2.0/24'), 1);
    assert.equal(w.add('192.0.2.0/24'), 2);
    assert.equal(w.add('198.51.100.0/24'), 1);
    assert.equal(w.count('192.0.2.0/24'), 2);
    assert.equal(w.count('203.0.113.0/24'), 0);
    assert.equal(w.window, 600);
  });

  test('rejections slide out after the window (60 s buckets for a 600 s window)', () => {
    const c = clock(6_000_000); // on a bucket boundary
    const w = new HarvestWindow({ window: 600, now: c.now });
    for (let i = 0; i < 4; i++) w.add('g');
    c.advance(300_000);
    w.add('g');
    assert.equal(w.count('g'), 5);
    c.advance(299_999);
    assert.equal(w.count('g'), 5);
    c.advance(1);
    assert.equal(w.count('g'), 1);
    c.advance(300_000);
    assert.equal(w.count('g'), 0);
    c.advance(1);
    w.count('g');
    assert.equal(w.size, 0, 'an entry does not outlive its window');
  });

  test('a slow sweep within the window adds up; one spread wider does not', () => {
    const c = clock();
    const slow = new HarvestWindow({ window: 600, now: c.now });
    let n = 0;
    for (let i = 0; i < 5; i++) {
      n = slow.add('g');
      c.advance(100_000); // one every 100 s
    }
    assert.equal(n, 5);
    const c2 = clock();
    const sparse = new HarvestWindow({ window: 600, now: c2.now });
    for (let i = 0; i < 5; i++) {
      n = sparse.add('g');
      c2.advance(700_000);
    }
    assert.equal(n, 1);
  });

  test('setWindow: the same length keeps counts, a new one starts afresh', () => {
    const c = clock();
    const w = new HarvestWindow({ now: c.now });
    assert.equal(w.window, 600);
    w.add('g');
    w.add('g');
    w.setWindow(600);
    assert.equal(w.count('g'), 2);
    w.setWindow(60);
    assert.equal(w.window, 60);
    assert.equal(w.count('g'), 0);
    w.add('g');
    c.advance(60_000);
    assert.equal(w.count('g'), 0);
  });

  test('bounded in groups and in memory per group', () => {
    const c = clock();
    const w = new HarvestWindow({ window: 600, maxGroups: 2, now: c.now });
    w.add('a');
    w.add('b');
    w.add('c');
    assert.equal(w.size, 2);
    assert.equal(w.count('a'), 0, 'least recently active group forgotten');
    assert.equal(w.count('c'), 1);
    for (let i = 0; i < 100_000; i++) {
      w.add('c');
      c.advance(10);
    }
    // 1,000 s of 100 per second: the window holds the last 540-600 s of them.
    const n = w.count('c');
    assert.ok(n >= 54_000 && n <= 60_000, String(n));
  });
});
