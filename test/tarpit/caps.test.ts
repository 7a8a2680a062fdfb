import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HoldCaps, type HoldCapsConfig } from '../../src/tarpit/caps.js';

const BASE: HoldCapsConfig = { maxHeld: 100, maxHeldPerClient: 100, maxHeldPerGroup: 100, groupIpv4: 24, groupIpv6: 64, memoryBudget: 0 };

function caps(over: Partial<HoldCapsConfig>, clock?: { now: () => number; rss: () => number }): HoldCaps {
  return new HoldCaps({ ...BASE, ...over }, clock);
}

test('maxHeld admits that many clients, refuses the next with "held", and a release frees one place', () => {
  const c = caps({ maxHeld: 3 });
  for (let i = 1; i <= 3; i++) assert.equal(c.admit(`192.0.${i}.1`), undefined);
  assert.equal(c.size, 3);
  assert.equal(c.admit('192.0.9.1'), 'held');
  assert.equal(c.size, 3, 'a refusal counts nothing');
  c.release('192.0.2.1');
  assert.equal(c.admit('192.0.9.1'), undefined);
  assert.equal(c.admit('192.0.10.1'), 'held');
});

test('maxHeldPerClient counts one address in all its spellings; another address is unaffected', () => {
  const c = caps({ maxHeldPerClient: 2 });
  assert.equal(c.admit('192.0.2.7'), undefined);
  assert.equal(c.admit('::ffff:192.0.2.7'), undefined);
  assert.equal(c.admit('192.0.2.7'), 'per_client');
  assert.equal(c.admit('192.0.2.8'), undefined);
  c.release('::ffff:192.0.2.7');
  assert.equal(c.admit('192.0.2.7'), undefined);
  assert.equal(c.admit('2001:db8::1'), undefined);
  assert.equal(c.admit('2001:DB8:0::1'), undefined);
  assert.equal(c.admit('2001:db8::1'), 'per_client');
});

test('maxHeldPerGroup groups IPv4 by /24 and IPv6 by /64 by default', () => {
  const c = caps({ maxHeldPerGroup: 2 });
  assert.equal(c.admit('192.0.2.1'), undefined);
  assert.equal(c.admit('192.0.2.200'), undefined);
  assert.equal(c.admit('192.0.2.99'), 'per_group');
  assert.equal(c.admit('192.0.3.1'), undefined, 'the next /24 is another group');
  assert.equal(c.admit('2001:db8:1:2::1'), undefined);
  assert.equal(c.admit('2001:db8:1:2:ffff::9'), undefined);
  assert.equal(c.admit('2001:db8:1:2::77'), 'per_group');
  assert.equal(c.admit('2001:db8:1:3::1'), undefined, 'the next /64 is another group');
  c.release('192.0.2.200');
  assert.equal(c.admit('192.0.2.99'), undefined);
});

test('the group prefix lengths come from the config', () => {
  const c = caps({ maxHeldPerGroup: 1, groupIpv4: 16, groupIpv6: 48 });
  assert.equal(c.admit('198.51.1.1'), undefined);
  assert.equal(c.admit('198.51.200.1'), 'per_group', 'same /16');
  assert.equal(c.admit('198.52.1.1'), undefined);
  assert.equal(c.admit('2001:db8:1:1::1'), undefined);
  assert.equal(c.admit('2001:db8:1:ff::1'), 'per_group', 'same /48');
  const exact = caps({ maxHeldPerGroup: 1, groupIpv4: 32 });
  assert.equal(exact.admit('198.51.100.1'), undefined);
  assert.equal(exact.admit('198.51.100.2'), undefined, 'a /32 group is the address itself');
});

test('the narrowest full cap is named: per_client before per_group before held', () => {
  const c = caps({ maxHeld: 2, maxHeldPerClient: 1, maxHeldPerGroup: 2 });
  assert.equal(c.admit('192.0.2.1'), undefined);
  assert.equal(c.admit('192.0.2.2'), undefined);
  assert.equal(c.admit('192.0.2.1'), 'per_client');
  assert.equal(c.admit('192.0.2.3'), 'per_group');
  assert.equal(c.admit('198.51.100.1'), 'held');
});

test('memoryBudget refuses with "memory" while RSS is above it, sampling RSS at most once a second', () => {
  let now = 0;
  let rss = 500;
  let samples = 0;
  const c = caps({ memoryBudget: 1000 }, { now: () => now, rss: () => (samples++, rss) });
  assert.equal(c.admit('192.0.2.1'), undefined);
  assert.equal(samples, 1);
  rss = 2000;
  now = 999;
  assert.equal(c.admit('192.0.2.2'), undefined, 'the last sample (500) still stands within the second');
  assert.equal(samples, 1);
  now = 1000;
  assert.equal(c.admit('192.0.2.3'), 'memory');
  assert.equal(samples, 2);
  for (let i = 0; i < 50; i++) assert.equal(c.admit('192.0.2.4'), 'memory');
  assert.equal(samples, 2, 'not sampled per connection');
  rss = 900;
  now = 2100;
  assert.equal(c.admit('192.0.2.4'), undefined);
  assert.equal(c.size, 3);
});

test('memoryBudget 0 never reads RSS', () => {
  let samples = 0;
  const c = caps({}, { now: () => 0, rss: () => (samples++, Number.MAX_SAFE_INTEGER) });
  assert.equal(c.admit('192.0.2.1'), undefined);
  assert.equal(samples, 0);
});

test('releases return every count to zero, and a stray release does not go negative', () => {
  const c = caps({ maxHeld: 2, maxHeldPerClient: 1, maxHeldPerGroup: 1 });
  assert.equal(c.admit('192.0.2.1'), undefined);
  assert.equal(c.admit('2001:db8::1'), undefined);
  c.release('192.0.2.1');
  c.release('2001:db8::1');
  c.release('192.0.2.1');
  assert.equal(c.size, 0);
  assert.equal(c.admit('192.0.2.1'), undefined);
  assert.equal(c.admit('2001:db8::1'), undefined);
  assert.equal(c.admit('203.0.113.1'), 'held', 'the stray release did not make room');
});
