import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { DataGuard } from '../../src/smtp/data-guard.js';
import { SmtpReplyError } from '../../src/core/errors.js';

async function run(chunks: string[], options: ConstructorParameters<typeof DataGuard>[0]) {
  const guard = new DataGuard(options);
  try {
    const out = await text(Readable.from(chunks.map((c) => Buffer.from(c, 'latin1'))).pipe(guard));
    return { out, guard };
  } catch (err) {
    return { err: err as SmtpReplyError, guard };
  }
}

const REJECT = { maxBytes: 1000, bareLineEndings: 'reject' } as const;

test('CRLF-only data passes unchanged, however it is split', async () => {
  const body = 'a\r\nb\r\n\r\nc\r\n';
  for (const size of [1, 2, 3, 17]) {
    const chunks = body.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g')) ?? [];
    const r = await run(chunks, REJECT);
    assert.equal(r.out, body, `chunks of ${size}`);
  }
});

for (const [name, body] of [
  ['bare LF', 'a\nb\r\n'],
  ['bare CR', 'a\rb\r\n'],
  ['bare LF at the start', '\nb\r\n'],
  ['CR at the very end', 'a\r\nb\r'],
] as const) {
  test(`${name} is refused with 550 5.5.2, split in any way`, async () => {
    for (const size of [1, 2, 3, 17]) {
      const chunks = body.match(new RegExp(`[\\s\\S]{1,${size}}`, 'g')) ?? [];
      const r = await run(chunks, REJECT);
      assert.equal(r.err?.code, 'TARPIT_ERR_BARE_LINE_ENDING', `chunks of ${size}`);
      assert.equal(r.err?.reply.code, 550);
      assert.equal(r.guard.violation, 'bare_line_ending');
    }
  });
}

test('in normalize mode bare line ends pass to the relay, which rewrites them', async () => {
  const r = await run(['a\nb\r'], { maxBytes: 1000, bareLineEndings: 'normalize' });
  assert.equal(r.out, 'a\nb\r');
});

test('data over the size limit fails with 552 5.3.4', async () => {
  const r = await run(['x'.repeat(600) + '\r\n', 'y'.repeat(600) + '\r\n'], REJECT);
  assert.equal(r.err?.code, 'TARPIT_ERR_MESSAGE_TOO_BIG');
  assert.equal(r.guard.violation, 'message_size');
});
