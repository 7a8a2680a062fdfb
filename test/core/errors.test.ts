import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ERRORS, replyError, SmtpReplyError, type ErrorCode } from '../../src/core/errors.js';
import { toWire } from '../../src/core/reply.js';

test('docs/replies.md lists every error code with its exact reply', () => {
  const doc = readFileSync('docs/replies.md', 'utf8');
  const rows = new Map(
    [...doc.matchAll(/^\| (TARPIT_ERR_\w+) \| (\d{3}) (\d\.\d{1,3}\.\d{1,3}) \|/gm)].map((m) => [m[1], `${m[2]} ${m[3]}`]),
  );
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.equal(rows.get(code), `${spec.code} ${spec.enhanced}`, `docs/replies.md row for ${code}`);
  }
  assert.deepEqual([...rows.keys()].sort(), Object.keys(ERRORS).sort(), 'no stale rows');
});

test('every enhanced code has the class of its reply code (RFC 3463 §2)', () => {
  for (const spec of Object.values(ERRORS)) assert.equal(spec.enhanced[0], String(spec.code)[0]);
});

test('a reply error carries smtp-server\'s callback contract and its own wire form', () => {
  const err = replyError('TARPIT_ERR_BACKEND_UNAVAILABLE');
  assert.ok(err instanceof SmtpReplyError);
  assert.equal(err.code, 'TARPIT_ERR_BACKEND_UNAVAILABLE' satisfies ErrorCode);
  assert.equal(err.responseCode, 451);
  assert.equal(err.message, '4.4.1 Mail system unavailable, please try again later');
  assert.equal(err.toWire(), '451 4.4.1 Mail system unavailable, please try again later\r\n');
});

test('a multi-line reply repeats its code with "-" and ends with a space line; lines stay within 512 octets', () => {
  assert.equal(toWire({ code: 250, text: 'one\ntwo' }), '250-one\r\n250 two\r\n');
  const long = toWire({ code: 550, enhanced: '5.0.0', text: 'x'.repeat(2000) });
  assert.equal(long.length, 512);
});
