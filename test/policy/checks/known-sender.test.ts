import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseIp } from '../../../src/core/ip.js';
import { checkKnownSender, rdnsSuffix } from '../../../src/policy/checks/known-sender.js';
import { parseCidrListText } from '../../../src/policy/lists/cidr-list.js';

const POLICY = {
  knownSenders: {
    rdnsSuffixes: ['google.com', 'outbound.protection.outlook.com'],
    trustedBelow: 0,
    networks: parseCidrListText('# walked from SPF\n209.85.128.0/17\n2a00:1450:4000::/37\n', 'known-senders.cidr'),
  },
};
const CLIENT = { address: '192.0.2.1', clientName: 'mx.example.org', score: 0 };

describe('checkKnownSender', () => {
  test('a client no rule vouches for is not known', () => {
    assert.equal(checkKnownSender(CLIENT, POLICY), undefined);
    assert.equal(checkKnownSender({ ...CLIENT, clientName: '[UNAVAILABLE]' }, POLICY), undefined);
    assert.equal(checkKnownSender({ ...CLIENT, clientName: '[TEMPUNAVAIL]' }, POLICY), undefined);
  });

  test('an address in knownSenders.networks is known, the list line named; IPv6 and IPv4-mapped too', () => {
    const known = checkKnownSender({ ...CLIENT, address: '209.85.220.41' }, POLICY);
    assert.equal(known?.rule, 'knownSenders.networks');
    assert.deepEqual(known?.evidence, { check: 'known-sender', weight: 0, class: 'allowlisted', reason: 'listed in known-senders.cidr:2 (209.85.128.0/17): knownSenders.networks' });
    assert.equal(checkKnownSender({ ...CLIENT, address: parseIp('::ffff:209.85.220.41') ?? '' }, POLICY)?.rule, 'knownSenders.networks');
    assert.equal(checkKnownSender({ ...CLIENT, address: '2a00:1450:4010:c05::1b' }, POLICY)?.rule, 'knownSenders.networks');
  });

  test('a forward-confirmed name under a suffix is known; a look-alike is not', () => {
    const known = checkKnownSender({ ...CLIENT, clientName: 'mail-ed1-f41.google.com' }, POLICY);
    assert.equal(known?.rule, 'knownSenders.rdnsSuffixes: google.com');
    assert.equal(known?.evidence.reason, 'forward-confirmed name mail-ed1-f41.google.com is under google.com: knownSenders.rdnsSuffixes');
    assert.equal(checkKnownSender({ ...CLIENT, clientName: 'GOOGLE.COM.' }, POLICY)?.rule, 'knownSenders.rdnsSuffixes: google.com');
    assert.equal(checkKnownSender({ ...CLIENT, clientName: 'mail.notgoogle.com' }, POLICY), undefined);
    assert.equal(checkKnownSender({ ...CLIENT, clientName: 'google.com.evil.example' }, POLICY), undefined);
  });

  test('a score below trustedBelow (a DNSWL listing) is known; at it is not', () => {
    assert.equal(checkKnownSender({ ...CLIENT, score: -3 }, POLICY)?.evidence.reason, 'score -3 is below knownSenders.trustedBelow (0)');
    assert.equal(checkKnownSender({ ...CLIENT, score: 0 }, POLICY), undefined);
  });

  test('the surest rule is named first: a listed network before a name, a name before a score', () => {
    assert.equal(checkKnownSender({ address: '209.85.220.41', clientName: 'mail-x.google.com', score: -5 }, POLICY)?.rule, 'knownSenders.networks');
    assert.equal(checkKnownSender({ ...CLIENT, clientName: 'mail-x.google.com', score: -5 }, POLICY)?.rule, 'knownSenders.rdnsSuffixes: google.com');
  });
});

describe('rdnsSuffix', () => {
  test('matches whole labels only', () => {
    assert.equal(rdnsSuffix('a.b.outbound.protection.outlook.com', POLICY.knownSenders.rdnsSuffixes), 'outbound.protection.outlook.com');
    assert.equal(rdnsSuffix('outlook.com', POLICY.knownSenders.rdnsSuffixes), undefined);
    assert.equal(rdnsSuffix('xgoogle.com', ['google.com']), undefined);
    assert.equal(rdnsSuffix('anything', []), undefined);
  });
});
