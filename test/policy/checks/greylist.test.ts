import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { greylistDefers, greylistExemption, greylistTriplet } from '../../../src/policy/checks/greylist.js';
import { parseIp } from '../../../src/core/ip.js';
import type { GreylistOutcome } from '../../../src/state/store.js';

const POLICY = {
  greylisting: { enabled: true, minDelay: 300, pendingExpiry: 14400, passedExpiry: 3024000, network: { ipv4: 24, ipv6: 64 } },
};
const CLEAN = { trusted: false, passed: undefined, knownSender: undefined };

describe('greylistExemption', () => {
  test('a client nobody vouches for is greylisted', () => {
    assert.equal(greylistExemption(CLEAN), undefined);
  });
  test('the allow list, the allowlist cache (address or network) and known senders are exempt', () => {
    assert.equal(greylistExemption({ ...CLEAN, trusted: true }), 'in the allow list');
    assert.equal(greylistExemption({ ...CLEAN, passed: 'address' }), 'in the allowlist cache (passed a hold)');
    assert.equal(greylistExemption({ ...CLEAN, passed: 'network' }), 'its network is in the allowlist cache (a neighbour passed a hold)');
    assert.equal(greylistExemption({ ...CLEAN, knownSender: 'knownSenders.rdnsSuffixes: google.com' }), 'a known sender (knownSenders.rdnsSuffixes: google.com)');
  });
});

describe('greylistTriplet', () => {
  test('the network by the greylisting prefix, addresses lower-cased, <> for the null sender', () => {
    assert.deepEqual(greylistTriplet('192.0.2.77', 'Bob@Example.ORG', 'Alice@Example.net', POLICY), { network: '192.0.2.0/24', sender: 'bob@example.org', recipient: 'alice@example.net' });
    assert.deepEqual(greylistTriplet('::ffff:192.0.2.77', '', 'a@b.c', POLICY), { network: '192.0.2.0/24', sender: '<>', recipient: 'a@b.c' });
    const v6 = parseIp('2001:db8:1:2:3::4');
    assert.ok(v6);
    assert.equal(greylistTriplet(v6, 'a@b.c', 'd@e.f', POLICY).network, '2001:db8:1:2::/64');
    assert.equal(greylistTriplet('192.0.2.77', 'a', 'b', { greylisting: { ...POLICY.greylisting, network: { ipv4: 32, ipv6: 128 } } }).network, '192.0.2.77');
  });
});

describe('greylistDefers', () => {
  const cases: [GreylistOutcome, boolean][] = [
    ['new', true],
    ['early', true],
    ['expired', true],
    ['passed', false],
    ['allowlisted', false],
  ];
  for (const [outcome, defers] of cases) test(`${outcome} -> ${defers ? '451' : 'relayed'}`, () => assert.equal(greylistDefers(outcome), defers));
});
