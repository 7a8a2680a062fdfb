/**
 * The DATA deadline on a hand-driven clock: nothing here waits on real time,
 * so a loaded machine cannot move a verdict.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DataRateWatch, STALL_STEP_MS, type RateClock } from '../../src/smtp/data-rate.js';

/** A clock that moves only when told to, running due timers in order. */
class FakeClock implements RateClock {
  private t = 0;
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): () => void {
    const timer = { at: this.t + ms, fn, live: true };
    this.timers.push(timer);
    return () => {
      timer.live = false;
    };
  }

  /** Moves to `ms` from the start, firing every timer due on the way. */
  advanceTo(ms: number): void {
    for (;;) {
      const due = this.timers.filter((x) => x.live && x.at <= ms).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      due.live = false;
      this.t = due.at;
      due.fn();
    }
    this.t = ms;
  }

  get pending(): number {
    return this.timers.filter((x) => x.live).length;
  }
}

function watch(options: { minRate: number; grace: number; stalled?: () => boolean }) {
  const clock = new FakeClock();
  const state = { bytes: 0, slow: undefined as { seconds: number; bytes: number } | undefined };
  const w = new DataRateWatch({
    ...options,
    bytes: () => state.bytes,
    onSlow: (seconds, bytes) => {
      assert.equal(state.slow, undefined, 'onSlow is called once');
      state.slow = { seconds, bytes };
    },
    clock,
  });
  return { clock, state, w };
}

test('a silent body fails exactly when the grace ends', () => {
  const { clock, state } = watch({ minRate: 100, grace: 10 });
  clock.advanceTo(9_999);
  assert.equal(state.slow, undefined);
  clock.advanceTo(10_000);
  assert.deepEqual(state.slow, { seconds: 10, bytes: 0 });
});

test('bytes sent in the grace count: each byte buys 1/minRate seconds', () => {
  const { clock, state } = watch({ minRate: 100, grace: 10 });
  clock.advanceTo(5_000);
  state.bytes = 500; // 5 s of credit after the grace
  clock.advanceTo(14_999);
  assert.equal(state.slow, undefined);
  clock.advanceTo(15_000);
  assert.deepEqual(state.slow, { seconds: 15, bytes: 500 });
});

test('a trickler (1 byte every 10 s) fails just after the grace, however long it keeps trickling', () => {
  const { clock, state } = watch({ minRate: 500, grace: 10 });
  for (let t = 0; t <= 60_000 && !state.slow; t += 10_000) {
    clock.advanceTo(t);
    state.bytes++;
  }
  assert.ok(state.slow);
  // 2 bytes in at 10 s: the deadline is 10 s + 2/500 s.
  assert.equal(state.slow.bytes, 2);
  assert.ok(state.slow.seconds >= 10 && state.slow.seconds < 10.01, `failed at ${state.slow.seconds} s`);
});

test('a sender at the minimum rate or above never fails, and stop() leaves no timer', () => {
  const { clock, state, w } = watch({ minRate: 1000, grace: 10 });
  for (let t = 0; t <= 600_000; t += 500) {
    clock.advanceTo(t);
    state.bytes += 500; // exactly 1000 B/s
  }
  assert.equal(state.slow, undefined);
  w.stop();
  assert.equal(clock.pending, 0);
  clock.advanceTo(10_000_000);
  assert.equal(state.slow, undefined);
});

test('a body that falls behind after a fast start fails once its credit is spent', () => {
  const { clock, state } = watch({ minRate: 1000, grace: 10 });
  clock.advanceTo(1_000);
  state.bytes = 20_000; // credit until 10 + 20 = 30 s
  clock.advanceTo(29_999);
  assert.equal(state.slow, undefined);
  clock.advanceTo(30_000);
  assert.deepEqual(state.slow, { seconds: 30, bytes: 20_000 });
});

test('time the relay is stalled (the backend not reading) is not the client\'s', () => {
  let stalled = true;
  const { clock, state } = watch({ minRate: 100, grace: 10, stalled: () => stalled });
  clock.advanceTo(10_000 + 5 * STALL_STEP_MS);
  assert.equal(state.slow, undefined, 'no verdict while stalled');
  stalled = false;
  clock.advanceTo(10_000 + 6 * STALL_STEP_MS);
  assert.ok(state.slow, 'fails once the relay takes data again and the client still has sent nothing');
});

test('minRate 0 turns the watch off', () => {
  const { clock, state } = watch({ minRate: 0, grace: 1 });
  assert.equal(clock.pending, 0);
  clock.advanceTo(1_000_000);
  assert.equal(state.slow, undefined);
});
