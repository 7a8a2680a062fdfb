import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_BACKEND_REPLY_LINE, ReplyProtocolError, ReplyReader } from '../../src/relay/reply-reader.js';

test('a single-line reply splits off its enhanced code', () => {
  const r = new ReplyReader();
  assert.deepEqual(r.feed(Buffer.from('250 2.1.0 Ok\r\n')), [{ code: 250, enhanced: '2.1.0', text: 'Ok' }]);
});

test('a multi-line reply arriving in 1-byte chunks joins its lines with \\n', () => {
  const r = new ReplyReader();
  const bytes = Buffer.from('550-5.7.1 first\r\n550-5.7.1 second\r\n550 5.7.1 third\r\n250 Ok\r\n');
  const out = [];
  for (const byte of bytes) out.push(...r.feed(Buffer.from([byte])));
  assert.deepEqual(out, [
    { code: 550, enhanced: '5.7.1', text: 'first\nsecond\nthird' },
    { code: 250, text: 'Ok' },
  ]);
  assert.equal(r.buffered, false);
});

test('an EHLO reply without enhanced codes keeps its lines', () => {
  const r = new ReplyReader();
  const [reply] = r.feed(Buffer.from('250-fake.test\r\n250-SIZE 100\r\n250 XCLIENT ADDR NAME\r\n'));
  assert.deepEqual(reply, { code: 250, text: 'fake.test\nSIZE 100\nXCLIENT ADDR NAME' });
});

test('a code without text and a bare LF line ending are accepted', () => {
  const r = new ReplyReader();
  assert.deepEqual(r.feed(Buffer.from('354\n')), [{ code: 354, text: '' }]);
});

test('an over-long line is a protocol error, even before its line end', () => {
  assert.throws(() => new ReplyReader().feed(Buffer.from('250 ' + 'x'.repeat(MAX_BACKEND_REPLY_LINE))), ReplyProtocolError);
  assert.throws(() => new ReplyReader().feed(Buffer.from('250 ' + 'x'.repeat(MAX_BACKEND_REPLY_LINE) + '\r\n')), ReplyProtocolError);
});

test('more than 100 lines is a protocol error', () => {
  assert.throws(() => new ReplyReader().feed(Buffer.from('250-x\r\n'.repeat(101))), ReplyProtocolError);
});

test('garbage and a code change inside a reply are protocol errors', () => {
  assert.throws(() => new ReplyReader().feed(Buffer.from('HTTP/1.1 400\r\n')), ReplyProtocolError);
  assert.throws(() => new ReplyReader().feed(Buffer.from('250-a\r\n251 b\r\n')), ReplyProtocolError);
});
