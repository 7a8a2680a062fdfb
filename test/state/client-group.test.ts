import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseIp } from '../../src/core/ip.js';
import { addressKey, clientGroup } from '../../src/state/client-group.js';

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
      const parsed = parseIp(address);
      if (parsed) assert.equal(clientGroup(parsed, group), expected, 'the same group from the parsed address');
    });
  }
});

// How an address is parsed and written is src/core/ip.ts's (test/core/ip.test.ts);
// here, only that the key is that canonical text and a non-address is its own key.
describe('addressKey', () => {
  const cases: [string, string][] = [
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['not an address', 'not an address'],
    ['', ''],
  ];
  for (const [input, expected] of cases) {
    test(`${input || '(empty)'} -> ${expected || '(empty)'}`, () => {
      assert.equal(addressKey(input), expected);
      const parsed = parseIp(input);
      if (parsed) assert.equal(addressKey(parsed), expected, 'the same key from the parsed address');
    });
  }
});
