import { test } from 'node:test';
import assert from 'node:assert/strict';
import { jittered, otherDelay, stageDelay } from '../../src/tarpit/hold-clock.js';
import type { TarpitProfile } from '../../src/policy/spec.js';

const PROFILE: TarpitProfile = { name: 'p', delays: { banner: 1, helo: 2, mail: 3, rcpt: 4, data: 5 }, end: { kind: 'allowlist' } };

test('jittered stays within [delay × (1 - jitter), delay × (1 + jitter)] and spans it', () => {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < 10_000; i++) {
    const d = jittered(10, 0.3, Math.random);
    assert.ok(d >= 7 && d < 13, `${d} out of [7, 13)`);
    lo = Math.min(lo, d);
    hi = Math.max(hi, d);
  }
  assert.ok(lo < 7.1 && hi > 12.9, `drawn from ${lo} to ${hi}: not spread over the range`);
  assert.equal(jittered(10, 0.3, () => 0), 7);
  assert.equal(jittered(10, 0.3, () => 0.5), 10);
  // No jitter, or no delay: exactly as written.
  assert.equal(jittered(10, 0, () => 0), 10);
  assert.equal(jittered(0, 0.5, () => 0.9), 0);
});

test('stageDelay reads the stage’s delay; otherDelay defaults to 0 for profiles without delays.other', () => {
  assert.deepEqual(
    (['connect', 'helo', 'mail', 'rcpt', 'data', 'quit'] as const).map((s) => stageDelay(PROFILE, s)),
    [1, 2, 3, 4, 5, 0],
  );
  assert.equal(otherDelay(PROFILE), 0);
  assert.equal(otherDelay({ ...PROFILE, delays: { ...PROFILE.delays, other: 7 } }), 7);
});
