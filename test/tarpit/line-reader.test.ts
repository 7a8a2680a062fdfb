import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LineReader, type LineResult } from '../../src/tarpit/line-reader.js';

function drain(r: LineReader): LineResult[] {
  const out: LineResult[] = [];
  for (let l = r.next(); l !== undefined; l = r.next()) out.push(l);
  return out;
}

const line = (text: string, bareLf = false): LineResult => ({ kind: 'line', text, bareLf });

test('CRLF lines, several per chunk and split across chunks', () => {
  const r = new LineReader(512);
  r.push(Buffer.from('EHLO a\r\nMAIL FROM:<x@'));
  assert.deepEqual(drain(r), [line('EHLO a')]);
  assert.equal(r.hasInput, true, 'the unfinished MAIL line is input waiting');
  r.push(Buffer.from('y>\r'));
  assert.deepEqual(drain(r), []);
  r.push(Buffer.from('\nRCPT TO:<z@y>\r\n'));
  assert.deepEqual(drain(r), [line('MAIL FROM:<x@y>'), line('RCPT TO:<z@y>')]);
  assert.equal(r.hasInput, false);
  assert.equal(r.buffered, 0);
});

test('a line ending in LF alone is flagged bare; CR inside a line is kept', () => {
  const r = new LineReader(512);
  r.push(Buffer.from('EHLO a\nNOOP\r\nX\rY\r\n\n'));
  assert.deepEqual(drain(r), [line('EHLO a', true), line('NOOP'), line('X\rY'), line('', true)]);
});

test('byte-by-byte input gives the same lines', () => {
  const r = new LineReader(512);
  const out: LineResult[] = [];
  for (const b of Buffer.from('HELO host.example\r\nQUIT\r\n')) {
    r.push(Buffer.from([b]));
    out.push(...drain(r));
  }
  assert.deepEqual(out, [line('HELO host.example'), line('QUIT')]);
});

test('UTF-8 text (SMTPUTF8 addresses) decodes, even split inside a character', () => {
  const r = new LineReader(512);
  const bytes = Buffer.from('RCPT TO:<jörg@exämple.org>\r\n');
  r.push(bytes.subarray(0, 11));
  r.push(bytes.subarray(11));
  assert.deepEqual(drain(r), [line('RCPT TO:<jörg@exämple.org>')]);
});

test('a complete line over the limit is reported tooLong and the next line is intact', () => {
  const r = new LineReader(16);
  r.push(Buffer.from('NOOP\r\n' + 'X'.repeat(40) + '\r\nQUIT\r\n'));
  assert.deepEqual(drain(r), [line('NOOP'), { kind: 'tooLong' }, line('QUIT')]);
});

test('the limit counts the line ending: 16 bytes with CRLF fit, 17 do not', () => {
  const r = new LineReader(16);
  r.push(Buffer.from('A'.repeat(14) + '\r\n' + 'B'.repeat(15) + '\r\n'));
  assert.deepEqual(drain(r), [line('A'.repeat(14)), { kind: 'tooLong' }]);
});

test('an unfinished line over the limit is cut at once: lines before it first, the rest discarded up to its LF', () => {
  const r = new LineReader(16);
  r.push(Buffer.from('NOOP\r\nRSET\r\n' + 'Y'.repeat(20)));
  assert.ok(r.buffered <= 12, `kept ${r.buffered} bytes: only the two complete lines`);
  assert.equal(r.hasInput, true);
  r.push(Buffer.from('Y'.repeat(1000)));
  r.push(Buffer.from('YYY\r\nQUIT\r\n'));
  assert.deepEqual(drain(r), [line('NOOP'), line('RSET'), { kind: 'tooLong' }, line('QUIT')]);
});

test('1 MB without a newline, in 64 KB chunks: memory stays under the limit and one tooLong is reported', () => {
  const r = new LineReader(4096);
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  const out: LineResult[] = [];
  let most = 0;
  for (let i = 0; i < 16; i++) {
    r.push(chunk);
    most = Math.max(most, r.buffered);
    out.push(...drain(r));
  }
  assert.ok(most <= 4096, `buffered up to ${most} bytes`);
  assert.deepEqual(out, [{ kind: 'tooLong' }]);
  r.push(Buffer.from('\r\nNOOP\r\n'));
  assert.deepEqual(drain(r), [line('NOOP')]);
});

test('an unfinished line trickled past the limit in small pieces is cut too', () => {
  const r = new LineReader(64);
  let most = 0;
  const out: LineResult[] = [];
  for (let i = 0; i < 200; i++) {
    r.push(Buffer.from('abc'));
    most = Math.max(most, r.buffered);
    out.push(...drain(r));
  }
  assert.ok(most <= 64, `buffered up to ${most} bytes`);
  assert.deepEqual(out, [{ kind: 'tooLong' }]);
});

test('clear forgets buffered bytes and a pending cut', () => {
  const r = new LineReader(8);
  r.push(Buffer.from('NOOP\r\n' + 'Z'.repeat(20)));
  r.clear();
  assert.equal(r.hasInput, false);
  assert.equal(r.next(), undefined);
  r.push(Buffer.from('QUIT\r\n'));
  assert.deepEqual(drain(r), [line('QUIT')]);
});

test('a chunk that finishes a held line and then runs too long keeps the finished line', () => {
  const r = new LineReader(32);
  r.push(Buffer.from('MAIL FROM:<a'));
  r.push(Buffer.from('@b>\r\n' + 'X'.repeat(100)));
  r.push(Buffer.from('\r\nRCPT TO:<c@d>\r\n'));
  assert.deepEqual(drain(r), [line('MAIL FROM:<a@b>'), { kind: 'tooLong' }, line('RCPT TO:<c@d>')]);
});
