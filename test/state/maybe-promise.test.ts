/**
 * when/whenAll: the continuation runs at once when nothing is pending (the
 * warm path of every DNS check), and after everything settled otherwise.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { when, whenAll } from '../../src/state/maybe-promise.js';

test('when() continues at once on a value and after a promise settles', async () => {
  const order: string[] = [];
  const now = when(2, (n) => {
    order.push('value');
    return n * 10;
  });
  assert.equal(now, 20, 'a plain value, not a promise');
  const later = when(Promise.resolve(3), (n) => {
    order.push('promise');
    return n * 10;
  });
  order.push('after call');
  assert.ok(later instanceof Promise);
  assert.equal(await later, 30);
  assert.deepEqual(order, ['value', 'after call', 'promise']);
});

test('when() flattens a continuation that itself returns a promise', async () => {
  assert.equal(await when(1, (n) => Promise.resolve(n + 1)), 2);
  assert.equal(await when(Promise.resolve(1), (n) => Promise.resolve(n + 1)), 2);
});

test('whenAll() is synchronous only when no value is pending, and keeps the order', async () => {
  const sync = whenAll([1, 2, 3], (xs) => xs.join(','));
  assert.equal(sync, '1,2,3');
  const mixed = whenAll([1, new Promise<number>((resolve) => setTimeout(() => resolve(2), 5)), 3], (xs) => xs.join(','));
  assert.ok(mixed instanceof Promise, 'one pending value makes it a promise');
  assert.equal(await mixed, '1,2,3');
  assert.equal(whenAll([], (xs) => xs.length), 0);
});

test('a rejection reaches the caller of whenAll()', async () => {
  await assert.rejects(
    Promise.resolve(whenAll([1, Promise.reject(new Error('boom'))], (xs) => xs.length)),
    /boom/,
  );
});
