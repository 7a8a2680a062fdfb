import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkReputation } from '../../../src/policy/checks/reputation.js';

const POLICY = { reputation: { enabled: true, weight: 2, threshold: 5, halfLife: 86400 } };

describe('checkReputation', () => {
  const cases: [bad: number, good: number, weighs: boolean][] = [
    [0, 0, false],
    [4.99, 0, false], // just under the threshold (decayed counts are fractional)
    [5, 0, true], // at the threshold
    [5, 5, false], // as many delivered as bad: a mixed network is not judged
    [7.26, 3.04, true],
    [40, 41, false], // a big sender with some bad neighbours
  ];
  for (const [bad, good, weighs] of cases) {
    test(`${bad} bad, ${good} delivered -> ${weighs ? 'weighs' : 'nothing'}`, () => {
      const evidence = checkReputation({ bad, good }, POLICY);
      if (!weighs) return assert.equal(evidence, undefined);
      assert.equal(evidence?.weight, 2);
      assert.equal(evidence?.class, 'reputation');
      assert.equal(evidence?.check, 'reputation');
    });
  }

  test('the reason rounds the decayed counts to one decimal and says the threshold and half-life', () => {
    assert.equal(checkReputation({ bad: 7.26, good: 3.04 }, POLICY)?.reason, "client's network has 7.3 recent bad sessions against 3 delivered (threshold 5, half-life 86400 s)");
  });

  test('off, or a weight of 0: never evidence', () => {
    assert.equal(checkReputation({ bad: 100, good: 0 }, { reputation: { ...POLICY.reputation, enabled: false } }), undefined);
    assert.equal(checkReputation({ bad: 100, good: 0 }, { reputation: { ...POLICY.reputation, weight: 0 } }), undefined);
  });
});
