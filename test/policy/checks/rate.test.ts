import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkRate } from '../../../src/policy/checks/rate.js';

const POLICY = { rate: { group: { ipv4: 24, ipv6: 64 }, maxConcurrent: 10, maxPerMinute: 60, weight: 3 } };

describe('checkRate', () => {
  const cases: [concurrent: number, perMinute: number, reason: string | undefined][] = [
    [1, 1, undefined],
    [10, 60, undefined], // at the limit is allowed
    [11, 12, "client's network has 11 sessions open at once (limit 10)"],
    [3, 61, "client's network has 61 new sessions in a minute (limit 60)"],
    [12, 300, "client's network has 12 sessions open at once (limit 10) and 300 new sessions in a minute (limit 60)"],
  ];
  for (const [concurrent, perMinute, reason] of cases) {
    test(`${concurrent} open, ${perMinute}/min -> ${reason === undefined ? 'nothing' : 'rate'}`, () => {
      const evidence = checkRate({ concurrent, perMinute }, POLICY);
      if (reason === undefined) return assert.equal(evidence, undefined);
      assert.deepEqual(evidence, { check: 'rate', weight: 3, class: 'rate', reason });
    });
  }
  test('weight 0 gives no evidence', () => {
    assert.equal(checkRate({ concurrent: 100, perMinute: 1000 }, { rate: { ...POLICY.rate, weight: 0 } }), undefined);
  });
});
