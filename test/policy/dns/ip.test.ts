import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatIp, ipv4ToUint, parseIp, sameIp } from '../../../src/policy/dns/ip.js';

test('parseIp folds IPv4-mapped IPv6 to IPv4 and rejects non-addresses', () => {
  assert.deepEqual(parseIp('::ffff:192.0.2.1'), { family: 4, bytes: Uint8Array.from([192, 0, 2, 1]) });
  assert.equal(parseIp('::ffff:c000:201')?.family, 4);
  assert.equal(parseIp('2001:db8::1')?.family, 6);
  assert.equal(parseIp('fe80::1%eth0')?.family, 6, 'a zone id is ignored');
  for (const bad of ['', 'mx.example.org', '1.2.3', '256.1.1.1', '2001:db8::1::2', '[::1]']) assert.equal(parseIp(bad), undefined, bad);
});

test('formatIp writes IPv6 in full lowercase groups', () => {
  assert.equal(formatIp(parseIp('2001:DB8::1')!), '2001:db8:0:0:0:0:0:1');
  assert.equal(formatIp(parseIp('::')!), '0:0:0:0:0:0:0:0');
  assert.equal(formatIp(parseIp('::ffff:10.0.0.1')!), '10.0.0.1');
  assert.equal(formatIp(parseIp('1::')!), '1:0:0:0:0:0:0:0');
});

test('sameIp compares addresses, not spellings', () => {
  assert.ok(sameIp('2001:DB8::1', '2001:db8:0:0::1'));
  assert.ok(sameIp('::ffff:127.0.0.1', '127.0.0.1'));
  assert.ok(!sameIp('2001:db8::1', '2001:db8::2'));
  assert.ok(!sameIp('127.0.0.1', '::1'));
  assert.ok(!sameIp('x', 'x'), 'non-addresses never match');
});

test('ipv4ToUint gives the unsigned value AnswerRange bounds use', () => {
  assert.equal(ipv4ToUint('127.0.0.2'), 0x7f000002);
  assert.equal(ipv4ToUint('255.255.255.255'), 0xffffffff);
  assert.equal(ipv4ToUint('::ffff:127.0.0.2'), 0x7f000002);
  assert.equal(ipv4ToUint('2001:db8::1'), undefined);
});
