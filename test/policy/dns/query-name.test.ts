/**
 * RFC 5782 query names: reversed octets for IPv4, reversed nibbles for IPv6,
 * IPv4-mapped IPv6 asked under its IPv4 name.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../../../src/core/ip.js';
import { ptrQueryName, reversedLabels, zoneQueryName } from '../../../src/policy/dns/query-name.js';

function ip(text: string) {
  const parsed = parseIp(text);
  assert.ok(parsed, `${text} parses`);
  return parsed;
}

test('IPv4 octets are reversed under the zone (RFC 5782 §2.1)', () => {
  assert.equal(zoneQueryName(ip('192.0.2.99'), 'zen.example.test'), '99.2.0.192.zen.example.test');
  assert.equal(zoneQueryName(ip('127.0.0.2'), 'bl.test.'), '2.0.0.127.bl.test', 'a trailing dot on the zone is dropped');
});

test('IPv6 is 32 reversed nibbles (RFC 5782 §2.4)', () => {
  // The RFC's own example: 2001:db8:1:2:3:4:567:89ab
  assert.equal(
    zoneQueryName(ip('2001:DB8:1:2:3:4:567:89AB'), 'ugly.example.com'),
    'b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com',
  );
  assert.equal(reversedLabels(ip('::1')).split('.').length, 32);
  assert.equal(reversedLabels(ip('::1')), `1${'.0'.repeat(31)}`);
});

test('IPv4-mapped IPv6 is asked as IPv4, in both spellings', () => {
  assert.equal(zoneQueryName(ip('::ffff:1.2.3.4'), 'bl.test'), '4.3.2.1.bl.test');
  assert.equal(zoneQueryName(ip('::ffff:0102:0304'), 'bl.test'), '4.3.2.1.bl.test');
  assert.equal(ptrQueryName(ip('::FFFF:192.0.2.1')), '1.2.0.192.in-addr.arpa');
});

test('PTR names live under in-addr.arpa and ip6.arpa', () => {
  assert.equal(ptrQueryName(ip('192.0.2.1')), '1.2.0.192.in-addr.arpa');
  assert.equal(ptrQueryName(ip('2001:db8::25')), `5.2${'.0'.repeat(22)}.8.b.d.0.1.0.0.2.ip6.arpa`);
});

test('an embedded dotted quad that is not a mapped address stays IPv6', () => {
  assert.equal(ip('::1.2.3.4').family, 'ipv6');
  assert.equal(ip('64:ff9b::192.0.2.1').family, 'ipv6');
  assert.equal(zoneQueryName(ip('64:ff9b::192.0.2.1'), 'z'), `1.0.2.0.0.0.0.c${'.0'.repeat(16)}.b.9.f.f.4.6.0.0.z`);
});
