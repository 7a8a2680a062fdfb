import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TimerQueue, type TimerTarget } from '../../src/tarpit/timer-queue.js';

/** A target that records when and in what order it fired. */
class Probe implements TimerTarget {
  fired = 0;
  at = 0;
  constructor(
    readonly name: string,
    private readonly log: Probe[],
  ) {}
  onTimer(): void {
    this.fired++;
    this.at = performance.now();
    this.log.push(this);
  }
}

// Generous: only a broken queue should reach it, not a loaded machine.
function until(cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (cond()) resolve();
      else if (performance.now() > deadline) reject(new Error('condition not met in time'));
      else setTimeout(poll, 2);
    };
    poll();
  });
}

test('fires in deadline order, ties in scheduling order, each once and never early', async () => {
  const q = new TimerQueue();
  const log: Probe[] = [];
  const start = performance.now();
  const plan: Array<[string, number]> = [
    ['c', 40],
    ['a1', 10],
    ['b', 25],
    ['a2', 10],
    ['z', 0],
  ];
  const probes = plan.map(([name, ms]) => {
    const p = new Probe(name, log);
    q.schedule(p, ms);
    return { p, ms };
  });
  assert.equal(q.size, 5);
  await until(() => log.length === 5);
  assert.deepEqual(
    log.map((p) => p.name),
    ['z', 'a1', 'a2', 'b', 'c'],
  );
  for (const { p, ms } of probes) {
    assert.equal(p.fired, 1);
    assert.ok(p.at - start >= ms, `${p.name} fired after ${p.at - start} ms, before its ${ms} ms`);
  }
  assert.equal(q.size, 0);
  assert.equal(q.armedDeadline, undefined, 'an empty queue keeps no timer armed');
});

test('cancel removes an entry at once; a second cancel or a cancel after firing is a no-op', async () => {
  const q = new TimerQueue();
  const log: Probe[] = [];
  const a = new Probe('a', log);
  const b = new Probe('b', log);
  const c = new Probe('c', log);
  q.schedule(a, 10);
  const hb = q.schedule(b, 15);
  const hc = q.schedule(c, 20);
  assert.equal(q.cancel(hb), true);
  assert.equal(q.size, 2);
  assert.equal(q.cancel(hb), false);
  await until(() => log.length === 2);
  await new Promise((r) => setTimeout(r, 30));
  assert.deepEqual(
    log.map((p) => p.name),
    ['a', 'c'],
  );
  assert.equal(b.fired, 0);
  assert.equal(q.cancel(hc), false, 'already fired');
  assert.equal(q.size, 0);
});

test('cancelling the last entry disarms the timer', () => {
  const q = new TimerQueue();
  const h = q.schedule(new Probe('a', []), 10_000);
  assert.notEqual(q.armedDeadline, undefined);
  q.cancel(h);
  assert.equal(q.size, 0);
  assert.equal(q.armedDeadline, undefined);
});

test('an earlier deadline re-arms the single timer; a later one does not', async () => {
  const q = new TimerQueue();
  const log: Probe[] = [];
  // Far off, so that a stalled machine can never make them due together with the early one.
  const late = q.schedule(new Probe('late', log), 30_000);
  assert.equal(q.armedDeadline, late.deadline);
  const later = q.schedule(new Probe('later', log), 40_000);
  assert.equal(q.armedDeadline, late.deadline, 'a later deadline leaves the armed timer alone');
  const start = performance.now();
  const early = q.schedule(new Probe('early', log), 20);
  assert.equal(q.armedDeadline, early.deadline, 'an earlier deadline re-arms');
  await until(() => log.length === 1);
  assert.equal(log[0]!.name, 'early');
  assert.ok(performance.now() - start < 15_000, 'the early entry did not wait for the late one');
  assert.equal(q.armedDeadline, late.deadline, 'after firing, armed for the next deadline');
  q.cancel(late);
  q.cancel(later);
  assert.equal(q.armedDeadline, undefined);
});

test('10,000 entries with random deadlines, a third cancelled: the rest fire once each, in order', async () => {
  const q = new TimerQueue();
  const log: Probe[] = [];
  const entries = Array.from({ length: 10_000 }, (_, i) => {
    const p = new Probe(String(i), log);
    return { p, handle: q.schedule(p, Math.random() * 60) };
  });
  let cancelled = 0;
  for (let i = 0; i < entries.length; i += 3) {
    assert.equal(q.cancel(entries[i]!.handle), true);
    cancelled++;
  }
  assert.equal(q.size, entries.length - cancelled);
  await until(() => q.size === 0);
  assert.equal(log.length, entries.length - cancelled);
  const deadlineOf = new Map(entries.map((e) => [e.p, e.handle.deadline]));
  for (let i = 1; i < log.length; i++) {
    assert.ok(deadlineOf.get(log[i - 1]!)! <= deadlineOf.get(log[i]!)!, `out of order at ${i}`);
  }
  for (let i = 0; i < entries.length; i++) {
    assert.equal(entries[i]!.p.fired, i % 3 === 0 ? 0 : 1);
  }
});

test('a throwing target is reported and the other due targets still fire', async () => {
  const errors: unknown[] = [];
  const q = new TimerQueue({ onError: (err) => errors.push(err) });
  const log: Probe[] = [];
  q.schedule({ onTimer: () => { throw new Error('boom'); } }, 5);
  q.schedule(new Probe('after', log), 5);
  await until(() => log.length === 1);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /boom/);
});

test('a target that reschedules itself at 0 ms runs on a later timer callback, not in the same fire loop', async () => {
  const q = new TimerQueue();
  let runs = 0;
  let sameLoop = 0;
  // Set by a run, cleared by a microtask: still set at the next run means that run came synchronously.
  let inLoop = false;
  const target: TimerTarget = {
    onTimer() {
      runs++;
      if (inLoop) sameLoop++;
      inLoop = true;
      queueMicrotask(() => (inLoop = false));
      if (runs < 20) q.schedule(target, 0);
    },
  };
  q.schedule(target, 0);
  await until(() => runs === 20);
  assert.equal(sameLoop, 0);
  assert.equal(q.size, 0);
});
