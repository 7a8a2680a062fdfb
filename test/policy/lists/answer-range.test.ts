import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AnswerRangeError, answerMatches, parseAnswerRange } from '../../../src/policy/lists/answer-range.js';

function refused(text: string): string {
  try {
    parseAnswerRange(text);
  } catch (err) {
    assert.ok(err instanceof AnswerRangeError, `expected AnswerRangeError, got ${String(err)}`);
    return err.reason;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be refused`);
}

test('one address, an inclusive range and a CIDR become first..last as unsigned integers', () => {
  assert.deepEqual(parseAnswerRange('127.0.0.2').range, { text: '127.0.0.2', first: 0x7f000002, last: 0x7f000002 });
  assert.deepEqual(parseAnswerRange('127.0.0.2-127.0.0.11').range, { text: '127.0.0.2-127.0.0.11', first: 0x7f000002, last: 0x7f00000b });
  assert.deepEqual(parseAnswerRange(' 127.0.0.2 - 127.0.0.11 ').range, { text: '127.0.0.2 - 127.0.0.11', first: 0x7f000002, last: 0x7f00000b });
  assert.deepEqual(parseAnswerRange('127.0.0.0/24').range, { text: '127.0.0.0/24', first: 0x7f000000, last: 0x7f0000ff });
  assert.deepEqual(parseAnswerRange('0.0.0.0/0').range, { text: '0.0.0.0/0', first: 0, last: 0xffffffff });
  assert.deepEqual(parseAnswerRange('255.255.255.255').range, { text: '255.255.255.255', first: 0xffffffff, last: 0xffffffff });
});

test('a CIDR with host bits set matches its whole network and says so', () => {
  const parsed = parseAnswerRange('127.0.0.9/24');
  assert.equal(parsed.range.first, 0x7f000000);
  assert.equal(parsed.range.last, 0x7f0000ff);
  assert.match(parsed.warning ?? '', /host bits set in 127\.0\.0\.9\/24.*127\.0\.0\.0\/24/);
  assert.equal(parseAnswerRange('127.0.0.0/24').warning, undefined);
});

test('IPv6, backwards ranges, bad prefixes and non-addresses are refused with a reason', () => {
  assert.match(refused('::1'), /IPv4 only/);
  assert.match(refused('127.0.0.0/16-127.0.1.0'), /not both/);
  assert.match(refused('127.0.0.11-127.0.0.2'), /backwards/);
  assert.match(refused('127.0.0.0/33'), /prefix/);
  assert.match(refused('127.0.0.0/'), /prefix/);
  assert.match(refused('127.0.0.0/-1'), /not both|prefix/);
  assert.match(refused('127.0.0.256'), /not an IPv4/);
  assert.match(refused('127.0.0'), /not an IPv4/);
  assert.match(refused('zen.example'), /not an IPv4/);
  assert.match(refused(''), /not an IPv4/);
  assert.match(refused('127.0.0.2-'), /after "-"/);
});

test('answerMatches: an empty filter counts every answer, otherwise only answers inside a range', () => {
  const ranges = [parseAnswerRange('127.0.0.2-127.0.0.11').range, parseAnswerRange('127.0.1.0/24').range];
  assert.equal(answerMatches([], '127.255.255.254'), true);
  assert.equal(answerMatches(ranges, '127.0.0.2'), true);
  assert.equal(answerMatches(ranges, '127.0.0.11'), true);
  assert.equal(answerMatches(ranges, '127.0.0.12'), false);
  assert.equal(answerMatches(ranges, '127.0.1.200'), true);
  assert.equal(answerMatches(ranges, '127.255.255.254'), false, 'Spamhaus "public resolver" error code');
  assert.equal(answerMatches(ranges, 'not-an-address'), false);
});
