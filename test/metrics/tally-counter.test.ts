/**
 * TallyCounter: increments counted in plain numbers must reach prom-client
 * whenever the counter is read, exactly as `inc(labels)` would have, and a
 * label set bound ahead appears from the start, at 0 (its values are known).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Registry } from 'prom-client';

import { TallyCounter } from '../../src/metrics/tally-counter.js';

function counter(): { registry: Registry; c: TallyCounter<'result'> } {
  const registry = new Registry();
  const c = new TallyCounter({ name: 'test_tally_total', help: 'test', labelNames: ['result'] as const, registers: [registry] });
  return { registry, c };
}

async function values(c: TallyCounter<'result'>): Promise<Record<string, number>> {
  return Object.fromEntries((await c.get()).values.map((v) => [String(v.labels.result), v.value]));
}

test('tallies reach the counter when it is read, added to plain inc() calls', async () => {
  const { registry, c } = counter();
  const hit = c.tally({ result: 'hit' });
  c.tally({ result: 'miss' }); // bound, never counted
  hit.inc();
  hit.inc();
  c.inc({ result: 'hit' });
  c.inc({ result: 'error' }, 4);
  assert.deepEqual(await values(c), { hit: 3, miss: 0, error: 4 }, 'a label set bound but never counted is a series at 0');
  hit.inc();
  assert.deepEqual(await values(c), { hit: 4, miss: 0, error: 4 }, 'counted once: a second read adds only what came since');
  assert.match(await registry.metrics(), /^test_tally_total\{result="hit"\} 4$/m, 'a scrape reads through get()');
});

test('two tallies of one label set add up', async () => {
  const { c } = counter();
  const a = c.tally({ result: 'hit' });
  const b = c.tally({ result: 'hit' });
  a.inc();
  b.inc();
  b.inc();
  assert.deepEqual(await values(c), { hit: 3 });
});

test('reset() drops what was tallied but not yet read', async () => {
  const { registry, c } = counter();
  const hit = c.tally({ result: 'hit' });
  hit.inc();
  registry.resetMetrics();
  assert.deepEqual(await values(c), { hit: 0 });
  hit.inc();
  assert.deepEqual(await values(c), { hit: 1 });
});
