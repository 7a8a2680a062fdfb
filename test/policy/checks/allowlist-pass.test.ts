import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkPass, messageFingerprint } from '../../../src/policy/checks/allowlist-pass.js';

const POLICY = { firstContact: { enabled: true, profile: { name: 'fc', delays: { banner: 1, helo: 1, mail: 1, rcpt: 1, data: 1 }, end: { kind: 'allowlist' as const } }, minRetryDelay: 60, earlyRetry: 1 } };
const T = 1_800_000_000_000;
const NONE = { address: undefined, network: undefined };

describe('checkPass', () => {
  test('no entry: no pass', () => {
    assert.equal(checkPass(NONE, T, POLICY).kind, 'miss');
  });

  test('the client\'s own deferred entry counts from minRetryDelay after its 451 on; sooner it is an early retry, with its weight and how soon', () => {
    const address = { since: T, deferred: true };
    const early = checkPass({ address, network: undefined }, T + 2_000, POLICY);
    assert.equal(early.kind, 'early');
    assert.ok(early.kind === 'early');
    assert.deepEqual(early.evidence, {
      check: 'early-retry',
      weight: 1,
      class: 'first-contact',
      reason: 'came back 2 s after its 451; a retry counts from 60 s on (firstContact.minRetryDelay)',
    });
    assert.equal(checkPass({ address, network: undefined }, T + 59_999, POLICY).kind, 'early');
    assert.equal(checkPass({ address, network: undefined }, T + 60_000, POLICY).kind, 'address');
  });

  test('an entry earned without a deferral (a greet wait\'s hand-over) counts at once; a pause of 0 lets any retry count', () => {
    assert.equal(checkPass({ address: { since: T, deferred: false }, network: undefined }, T, POLICY).kind, 'address');
    const none = { firstContact: { ...POLICY.firstContact, minRetryDelay: 0 } };
    assert.equal(checkPass({ address: { since: T, deferred: true }, network: undefined }, T, none).kind, 'address');
  });

  test('the network\'s entry vouches for a neighbour after the same pause; before it, a neighbour is no early retry, just unknown', () => {
    const network = { since: T, deferred: true };
    assert.equal(checkPass({ address: undefined, network }, T + 61_000, POLICY).kind, 'network');
    assert.equal(checkPass({ address: undefined, network }, T + 1_000, POLICY).kind, 'miss');
  });

  test('the client\'s own early return wins over its network\'s pass', () => {
    const marks = { address: { since: T + 100_000, deferred: true }, network: { since: T, deferred: true } };
    assert.equal(checkPass(marks, T + 101_000, POLICY).kind, 'early');
  });
});

describe('messageFingerprint', () => {
  test('the same envelope in any case and recipient order gives one fingerprint; another message another; no address shows', () => {
    const a = messageFingerprint({ sender: 'News@Example.org', recipients: ['b@example.net', 'A@example.net'] });
    assert.equal(a, messageFingerprint({ sender: 'news@example.org', recipients: ['a@example.net', 'B@EXAMPLE.NET'] }));
    assert.notEqual(a, messageFingerprint({ sender: 'news@example.org', recipients: ['a@example.net'] }));
    assert.notEqual(a, messageFingerprint({ sender: '', recipients: ['a@example.net', 'b@example.net'] }));
    assert.match(a, /^[0-9a-f]{16}$/);
  });
});
