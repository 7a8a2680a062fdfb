import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkHarvest } from '../../../src/policy/checks/harvest.js';

const POLICY = { harvest: { rejected: 5, window: 600, weight: 8 } };

describe('checkHarvest', () => {
  const cases: [session: number, window: number, reason: string | undefined][] = [
    [0, 0, undefined],
    [4, 4, undefined],
    [5, 5, 'recipients rejected by the backend in this session (limit 5)'],
    [7, 3, 'recipients rejected by the backend in this session (limit 5)'],
    [1, 5, "recipients rejected by the backend for the client's network in 600 s (limit 5)"],
    [2, 40, "recipients rejected by the backend for the client's network in 600 s (limit 5)"],
  ];
  for (const [session, window, reason] of cases) {
    test(`${session} in session, ${window} in window -> ${reason === undefined ? 'nothing' : 'harvest'}`, () => {
      const evidence = checkHarvest(session, window, POLICY);
      if (reason === undefined) return assert.equal(evidence, undefined);
      assert.equal(evidence?.check, 'harvest');
      assert.equal(evidence?.class, 'harvest');
      assert.equal(evidence?.weight, 8);
      assert.ok(evidence?.reason.endsWith(reason), evidence?.reason);
      assert.ok(evidence?.reason.startsWith(String(reason.includes('session') ? session : window)), evidence?.reason);
    });
  }
  test('weight 0 gives no evidence', () => {
    assert.equal(checkHarvest(50, 50, { harvest: { ...POLICY.harvest, weight: 0 } }), undefined);
  });
});
