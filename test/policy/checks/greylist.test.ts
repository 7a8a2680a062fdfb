import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { greylistDefers, greylistExemption, greylistTriplet, rdnsSuffix } from '../../../src/policy/checks/greylist.js';
import { parseIp } from '../../../src/core/ip.js';
import type { GreylistOutcome } from '../../../src/state/store.js';

const POLICY = {
  greylisting: {
    enabled: true,
    minDelay: 300,
    pendingExpiry: 14400,
    passedExpiry: 3024000,
    network: { ipv4: 24, ipv6: 64 },
    exempt: { rdnsSuffixes: ['google.com', 'outbound.protection.outlook.com'], trustedBelow: 0 },
  },
};
const CLEAN = { trusted: false, cached: false, clientName: 'mx.example.org', score: 0 };

describe('greylistExemption', () => {
  test('a clean client with an unknown name is greylisted', () => {
    assert.equal(greylistExemption(CLEAN, POLICY), undefined);
    assert.equal(greylistExemption({ ...CLEAN, clientName: '[UNAVAILABLE]' }, POLICY), undefined);
  });
  test('the allow list and the allowlist cache are exempt', () => {
    assert.equal(greylistExemption({ ...CLEAN, trusted: true }, POLICY), 'in the allow list');
    assert.equal(greylistExemption({ ...CLEAN, cached: true }, POLICY), 'in the allowlist cache (passed a hold)');
  });
  test('an rDNS name under a listed suffix is exempt; a look-alike is not', () => {
    assert.equal(greylistExemption({ ...CLEAN, clientName: 'mail-ed1-f41.google.com' }, POLICY), 'client name mail-ed1-f41.google.com is under google.com');
    assert.equal(greylistExemption({ ...CLEAN, clientName: 'GOOGLE.COM.' }, POLICY), 'client name GOOGLE.COM. is under google.com');
    assert.equal(greylistExemption({ ...CLEAN, clientName: 'mail.notgoogle.com' }, POLICY), undefined);
    assert.equal(greylistExemption({ ...CLEAN, clientName: 'google.com.evil.example' }, POLICY), undefined);
  });
  test('a score below trustedBelow (a DNSWL listing) is exempt; at it is not', () => {
    assert.equal(greylistExemption({ ...CLEAN, score: -3 }, POLICY), 'score -3 is below 0');
    assert.equal(greylistExemption({ ...CLEAN, score: 0 }, POLICY), undefined);
  });
});

describe('rdnsSuffix', () => {
  test('matches whole labels only', () => {
    assert.equal(rdnsSuffix('a.b.outbound.protection.outlook.com', POLICY.greylisting.exempt.rdnsSuffixes), 'outbound.protection.outlook.com');
    assert.equal(rdnsSuffix('outlook.com', POLICY.greylisting.exempt.rdnsSuffixes), undefined);
    assert.equal(rdnsSuffix('xgoogle.com', ['google.com']), undefined);
    assert.equal(rdnsSuffix('anything', []), undefined);
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
