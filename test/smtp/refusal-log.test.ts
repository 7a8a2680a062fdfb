import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/metrics/logger.js';
import { RefusalLog } from '../../src/smtp/refusal-log.js';

/** A RefusalLog whose windows end only when the test calls flush(). */
function capture(maxAddresses?: number): { log: RefusalLog; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const log = new RefusalLog(createLogger('info', sink), { windowMs: 0, ...(maxAddresses === undefined ? {} : { maxAddresses }) });
  return { log, lines };
}

const flushed = () => new Promise((r) => setImmediate(r));

test('the first refusal of an address is logged now, the rest of the window is counted into one line', async () => {
  const { log, lines } = capture();
  assert.equal(log.note('192.0.2.1', 'per_client'), true);
  for (let i = 0; i < 999; i++) assert.equal(log.note('192.0.2.1', 'per_client'), false);
  assert.equal(log.note('192.0.2.2', 'connections'), true);
  log.flush();
  await flushed();
  assert.deepEqual(
    lines.map((l) => [l.msg, l.client, l.refused, l.count]),
    [['connections refused', '192.0.2.1', 'per_client', 999]],
  );
});

test('an address refused on and on writes one line per window and no new first line; one that stopped is forgotten', async () => {
  const { log, lines } = capture();
  log.note('192.0.2.1', 'per_client');
  log.note('192.0.2.1', 'per_client');
  log.flush();
  assert.equal(log.note('192.0.2.1', 'reserve'), false, 'still known: it was refused again last window');
  log.flush();
  log.flush();
  assert.equal(log.note('192.0.2.1', 'per_client'), true, 'a quiet window forgets it');
  await flushed();
  assert.deepEqual(
    lines.map((l) => [l.client, l.refused, l.count]),
    [
      ['192.0.2.1', 'per_client', 1],
      ['192.0.2.1', 'reserve', 1],
    ],
  );
});

test('past maxAddresses a window sums the rest into one warning, so a flood from many addresses stays bounded', async () => {
  const { log, lines } = capture(2);
  assert.equal(log.note('192.0.2.1', 'connections'), true);
  assert.equal(log.note('192.0.2.2', 'connections'), true);
  for (let i = 3; i < 103; i++) assert.equal(log.note(`192.0.2.${i}`, 'connections'), false);
  log.flush();
  await flushed();
  assert.deepEqual(
    lines.map((l) => [l.level, l.count]),
    [['warn', 100]],
  );
});
