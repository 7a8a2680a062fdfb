import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { addressKey, clientGroup, formatIp, parseIp, sameAddress } from '../../src/state/client-group.js';

const DEFAULT = { ipv4: 24, ipv6: 64 };

describe('clientGroup', () => {
  const cases: [address: string, group: { ipv4: number; ipv6: number }, expected: string][] = [
    ['192.0.2.77', DEFAULT, '192.0.2.0/24'],
    ['192.0.2.0', DEFAULT, '192.0.2.0/24'],
    ['192.0.2.255', DEFAULT, '192.0.2.0/24'],
    ['192.0.3.1', DEFAULT, '192.0.3.0/24'],
    ['::ffff:192.0.2.77', DEFAULT, '192.0.2.0/24'],
    ['::FFFF:c000:024d', DEFAULT, '192.0.2.0/24'],
    ['2001:db8:1:2:3:4:5:6', DEFAULT, '2001:db8:1:2::/64'],
    ['2001:0DB8:0001:0002:ffff::1', DEFAULT, '2001:db8:1:2::/64'],
    ['2001:db8::1', DEFAULT, '2001:db8::/64'],
    ['fe80::1%eth0', DEFAULT, 'fe80::/64'],
    ['::1', DEFAULT, '::/64'],
    ['192.0.2.77', { ipv4: 32, ipv6: 128 }, '192.0.2.77'],
    ['::ffff:192.0.2.77', { ipv4: 32, ipv6: 128 }, '192.0.2.77'],
    ['2001:DB8:0:0:0:0:0:1', { ipv4: 32, ipv6: 128 }, '2001:db8::1'],
    ['192.0.2.200', { ipv4: 25, ipv6: 64 }, '192.0.2.128/25'],
    ['192.0.2.77', { ipv4: 16, ipv6: 64 }, '192.0.0.0/16'],
    ['203.0.113.9', { ipv4: 0, ipv6: 0 }, '0.0.0.0/0'],
    ['2001:db8:abcd:1234::1', { ipv4: 24, ipv6: 56 }, '2001:db8:abcd:1200::/56'],
    ['2001:db8:abcd:12ff::1', { ipv4: 24, ipv6: 52 }, '2001:db8:abcd:1000::/52'],
    ['2001:db8::1', { ipv4: 24, ipv6: 0 }, '::/0'],
    // Out-of-range prefixes clamp rather than throw.
    ['192.0.2.77', { ipv4: 40, ipv6: 200 }, '192.0.2.77'],
    ['2001:db8::1', { ipv4: 24, ipv6: -4 }, '::/0'],
    // Not an address: its own group.
    ['/run/smtp.sock', DEFAULT, '/run/smtp.sock'],
    ['', DEFAULT, ''],
  ];
  for (const [address, group, expected] of cases) {
    test(`${address || '(empty)'} /${group.ipv4},/${group.ipv6} -> ${expected}`, () => {
      assert.equal(clientGroup(address, group), expected);
    });
  }
});

describe('addressKey and formatIp', () => {
  const cases: [string, string][] = [
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::ffff:c000:201', '192.0.2.1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // leftmost of equal runs (RFC 5952 §4.2.3)
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'], // the longest run
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not shortened
    ['0:0:0:0:0:0:0:0', '::'],
    ['1::', '1::'],
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'], // one zero group is never :: (RFC 5952 §4.2.2)
    ['::1.2.3.4', '::102:304'], // IPv4-compatible (not mapped): stays IPv6
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
    ['fe80::1%eth0', 'fe80::1'],
    ['not an address', 'not an address'],
  ];
  for (const [input, expected] of cases) {
    test(`${input} -> ${expected}`, () => assert.equal(addressKey(input), expected));
  }
  test('formatIp round-trips parseIp', () => {
    const ip = parseIp('2001:db8:85a3::8a2e:370:7334');
    assert.ok(ip);
    assert.equal(formatIp(ip), '2001:db8:85a3::8a2e:370:7334');
  });
});

describe('parseIp and sameAddress', () => {
  test('mapped IPv6 and IPv4 are the same address; other families are not', () => {
    const a = parseIp('192.0.2.1')!;
    assert.equal(sameAddress(a, parseIp('::ffff:192.0.2.1')!), true);
    assert.equal(sameAddress(a, parseIp('192.0.2.2')!), false);
    assert.equal(sameAddress(a, parseIp('::192.0.2.1')!), false);
    assert.equal(parseIp('999.0.0.1'), undefined);
    assert.equal(parseIp('example.org'), undefined);
  });
});
