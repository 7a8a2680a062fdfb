import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import type { Evidence, ReasonClass } from '../../src/policy/evidence.js';
import { MAX_EVIDENCE, Score } from '../../src/policy/score.js';

const THRESHOLDS = { tarpit: 3, reject: 8, drop: 15 };

function ev(check: string, weight: number, cls: ReasonClass = 'helo'): Evidence {
  return { check, weight, class: cls, reason: `${check} seen` };
}

describe('Score', () => {
  test('weights add up and each add reports the verdict before and after', () => {
    const score = new Score(THRESHOLDS);
    assert.equal(score.verdict(), 'pass');
    assert.deepEqual(score.add(ev('helo.notFqdn', 1)), { before: 'pass', after: 'pass' });
    assert.deepEqual(score.add(ev('rdns', 2, 'rdns')), { before: 'pass', after: 'tarpit' });
    assert.deepEqual(score.add(ev('harvest', 8, 'harvest')), { before: 'tarpit', after: 'reject' });
    assert.deepEqual(score.add(ev('protocol.nonSmtp', 15, 'protocol')), { before: 'reject', after: 'drop' });
    assert.equal(score.total, 26);
    assert.deepEqual(
      score.evidence.map((e) => e.check),
      ['helo.notFqdn', 'rdns', 'harvest', 'protocol.nonSmtp'],
    );
  });

  test('weight-0 evidence is kept but changes nothing', () => {
    const score = new Score(THRESHOLDS);
    const allow: Evidence = { check: 'allow', weight: 0, class: 'allowlisted', reason: 'listed in allow.cidr:3 (192.0.2.0/24)' };
    assert.deepEqual(score.add(allow), { before: 'pass', after: 'pass' });
    assert.equal(score.total, 0);
    assert.deepEqual(score.evidence, [allow]);
    assert.equal(score.strongestClass(), undefined);
  });

  test('a negative weight before an escalation lowers the score', () => {
    const score = new Score(THRESHOLDS);
    score.add(ev('dnswl', -5, 'dnswl'));
    assert.deepEqual(score.add(ev('block', 5, 'blocklisted')), { before: 'pass', after: 'pass' });
    assert.equal(score.total, 0);
    assert.deepEqual(score.add(ev('pregreet', 8, 'pregreet')), { before: 'pass', after: 'reject' });
  });

  test('verdicts only escalate: a DNSWL answer after a pregreet does not un-reject', () => {
    const score = new Score(THRESHOLDS);
    score.add(ev('pregreet', 8, 'pregreet'));
    assert.deepEqual(score.add(ev('dnswl', -5, 'dnswl')), { before: 'reject', after: 'reject' });
    assert.equal(score.total, 3);
    assert.equal(score.peak, 8);
    assert.equal(score.verdict(), 'reject');
    // Later evidence counts from the lowered total: 3 + 4 = 7 is under the reject threshold, yet the verdict stays.
    assert.deepEqual(score.add(ev('helo.claimsUs', 4)), { before: 'reject', after: 'reject' });
    assert.equal(score.total, 7);
    assert.deepEqual(score.add(ev('harvest', 9, 'harvest')), { before: 'reject', after: 'drop' });
  });

  test('a dip below a threshold never reached changes nothing', () => {
    const score = new Score(THRESHOLDS);
    score.add(ev('helo.notFqdn', 2));
    score.add(ev('dnswl', -5, 'dnswl'));
    assert.deepEqual(score.add(ev('rdns', 4, 'rdns')), { before: 'pass', after: 'pass' });
    assert.equal(score.total, 1);
    assert.equal(score.peak, 2);
  });

  test('thresholds at or below zero: a DNSWL answer that comes first keeps the client below', () => {
    const holdAll = { tarpit: 0, reject: 8, drop: 15 };
    const vouched = new Score(holdAll);
    assert.equal(vouched.verdict(), 'tarpit', 'nothing known yet: held');
    assert.deepEqual(vouched.add(ev('dnswl', -5, 'dnswl')), { before: 'tarpit', after: 'pass' });
    const unknown = new Score(holdAll);
    unknown.add(ev('helo.notFqdn', 1));
    assert.deepEqual(unknown.add(ev('dnswl', -5, 'dnswl')), { before: 'tarpit', after: 'tarpit' });
  });

  test('verdict() under other thresholds uses the same peak', () => {
    const score = new Score(THRESHOLDS);
    score.add(ev('block', 5, 'blocklisted'));
    score.add(ev('dnswl', -5, 'dnswl'));
    assert.equal(score.verdict(), 'tarpit');
    assert.equal(score.verdict({ tarpit: 1, reject: 4, drop: 20 }), 'reject');
    assert.equal(score.verdict({ tarpit: 6, reject: 7, drop: 8 }), 'pass');
  });

  test('the evidence list is bounded; the score counts everything', () => {
    const score = new Score({ tarpit: 1000, reject: 2000, drop: 3000 });
    for (let i = 0; i < 100; i++) score.add(ev(`check${i}`, 1));
    assert.equal(score.evidence.length, MAX_EVIDENCE);
    assert.equal(score.omitted, 100 - MAX_EVIDENCE);
    assert.equal(score.total, 100);
    assert.equal(score.evidence[0]?.check, 'check0');
  });

  test('strongestClass: the class that added the most, summed per class, earliest on a tie', () => {
    const score = new Score(THRESHOLDS);
    assert.equal(score.strongestClass(), undefined);
    score.add(ev('dnswl', -10, 'dnswl'));
    assert.equal(score.strongestClass(), undefined, 'negative weights never name the reason');
    score.add(ev('rdns', 2, 'rdns'));
    assert.equal(score.strongestClass(), 'rdns');
    score.add(ev('dnsbl', 3, 'dnsbl'));
    assert.equal(score.strongestClass(), 'dnsbl');
    score.add(ev('helo.notFqdn', 1, 'helo'));
    score.add(ev('helo.badSyntax', 3, 'helo'));
    assert.equal(score.strongestClass(), 'helo', 'helo 1 + 3 beats dnsbl 3');
    score.add(ev('dnsbl', 1, 'dnsbl'));
    assert.equal(score.strongestClass(), 'helo', 'a tie goes to the class that got there first');
  });

  test('strongestClass counts evidence beyond the kept list', () => {
    const score = new Score(THRESHOLDS);
    for (let i = 0; i < MAX_EVIDENCE; i++) score.add(ev(`helo${i}`, 0.1));
    score.add(ev('harvest', 8, 'harvest'));
    assert.equal(score.evidence.length, MAX_EVIDENCE);
    assert.equal(score.strongestClass(), 'harvest');
  });
});
