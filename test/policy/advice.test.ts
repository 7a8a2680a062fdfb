import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { localHoldHint, shortestChange, type AdviceSubject } from '../../src/policy/advice.js';
import type { Evidence } from '../../src/policy/evidence.js';

const RDNS: Evidence = { check: 'rdns', weight: 2, reason: 'no reverse DNS (PTR) for 127.0.0.1', class: 'rdns' };
const HELO: Evidence = { check: 'helo.notFqdn', weight: 1, reason: 'HELO "box" is not a fully qualified domain name', class: 'helo' };
const FIRST: Evidence = { check: 'first-contact', weight: 0, reason: 'not seen before: held before it may deliver', class: 'first-contact' };
const PREGREET: Evidence = { check: 'pregreet', weight: 8, reason: 'sent 20 bytes before the banner', class: 'pregreet' };

const POLICY = {
  thresholds: { tarpit: 3, reject: 8, drop: 15 },
  firstContact: { enabled: true, profile: { name: 'fc', delays: { banner: 1, helo: 1, mail: 1, rcpt: 1, data: 1 }, end: { kind: 'allowlist' as const } }, minRetryDelay: 60, earlyRetry: 1 },
};

function subject(address: string, evidence: Evidence[], verdict: AdviceSubject['verdict'], firstContact = true): AdviceSubject {
  return { address, evidence, score: evidence.reduce((s, e) => s + e.weight, 0), verdict, firstContact, policy: POLICY };
}

describe('localHoldHint', () => {
  test('a local test with swaks\' defaults (no PTR, a bare HELO) is told why it is held and how to test', () => {
    const hint = localHoldHint(subject('127.0.0.1', [RDNS, FIRST, HELO], 'tarpit'));
    assert.ok(hint !== undefined);
    assert.match(hint, /^127\.0\.0\.1 is a local address held in the tarpit: score 3 reaches verdicts\.tarpit \(3\) with no reverse DNS \(PTR\) for 127\.0\.0\.1 \(rdns \+2\); HELO "box" is not a fully qualified domain name \(helo\.notFqdn \+1\)\./);
    assert.match(hint, /list 127\.0\.0\.1 in policies\/allow\.cidr/);
    assert.match(hint, /smtp-tarpit explain --ip 127\.0\.0\.1 --helo NAME/);
  });

  test('a private or IPv6 loopback client held as a first contact is told that too; a public client gets no hint', () => {
    assert.match(localHoldHint(subject('192.168.1.20', [FIRST], 'pass')) ?? '', /^192\.168\.1\.20 is a local address held as a first contact/);
    assert.match(localHoldHint(subject('::1', [RDNS, FIRST], 'pass')) ?? '', /held as a first contact .*; it also scores no reverse DNS/);
    assert.match(localHoldHint(subject('10.1.2.3', [FIRST], 'pass')) ?? '', /local address/);
    assert.equal(localHoldHint(subject('198.51.100.7', [RDNS, FIRST, HELO], 'tarpit')), undefined);
    assert.equal(localHoldHint(subject('172.32.0.1', [FIRST], 'pass')), undefined, '172.32/16 is not private');
  });
});

describe('shortestChange', () => {
  test('each single fix that is enough is one alternative, the sender\'s own (HELO) first, after the allow list', () => {
    const advice = shortestChange(subject('127.0.0.1', [RDNS, FIRST, HELO], 'tarpit'));
    assert.equal(advice.length, 3, advice.join('\n'));
    assert.equal(advice[0], 'list 127.0.0.1 in policies/allow.cidr (a partner: no checks, no hold)');
    assert.match(advice[1] ?? '', /^or send a fully qualified HELO name .*\(helo\.notFqdn \+1\): score 2, below verdicts\.tarpit \(3\); then as a first contact/);
    assert.match(advice[2] ?? '', /^or give it a PTR record whose name resolves back to it \(rdns \+2\): score 1/);
  });

  test('when one fix is not enough, the fewest that are; when none are, it says so', () => {
    const heavy = { ...RDNS, weight: 3 };
    const both = shortestChange({ ...subject('198.51.100.7', [heavy, HELO], 'tarpit'), score: 6 });
    assert.match(both[1] ?? '', /^or give it a PTR .* and send a fully qualified HELO .*: score 2/);
    const bot = shortestChange(subject('198.51.100.7', [PREGREET, HELO], 'reject'));
    assert.match(bot[1] ?? '', /whatever it fixes .*its own behaviour/);
  });

  test('a first contact below the threshold is told about the retry and known senders; a relayed client gets nothing', () => {
    const fc = shortestChange(subject('198.51.100.7', [FIRST], 'pass'));
    assert.match(fc[1] ?? '', /^or as a first contact it sits the hold out once, and its retry 60 s or more after the 451 is relayed \(a known sender skips that: knownSenders\)$/);
    assert.deepEqual(shortestChange(subject('198.51.100.7', [], 'pass', false)), []);
  });
});
