import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionLimits, type ConnectionLimitsConfig } from '../../src/smtp/limits.js';

const CONFIG: ConnectionLimitsConfig = { maxConnections: 10, maxConnectionsPerClient: 2, maxConnectionsPerAllowedClient: 4, cleanReserve: 0.3 };

test('the total cap admits maxConnections and a release makes room again', () => {
  const limits = new ConnectionLimits(CONFIG, () => false);
  for (let i = 0; i < 10; i++) assert.equal(limits.admit(), undefined);
  assert.equal(limits.admit(), 'connections');
  assert.equal(limits.open, 10);
  limits.release();
  assert.equal(limits.admit(), undefined);
});

test('an address on the allow list gets maxConnectionsPerAllowedClient; the list is asked only at the ordinary cap', () => {
  const asked: string[] = [];
  const limits = new ConnectionLimits(CONFIG, (a) => {
    asked.push(a);
    return a === '192.0.2.1';
  });
  for (let i = 0; i < 2; i++) assert.equal(limits.admitClient('192.0.2.9'), undefined);
  assert.equal(limits.admitClient('192.0.2.9'), 'per_client');
  for (let i = 0; i < 2; i++) assert.equal(limits.admitClient('192.0.2.1'), undefined);
  assert.deepEqual(asked, ['192.0.2.9']);
  for (let i = 0; i < 2; i++) assert.equal(limits.admitClient('192.0.2.1'), undefined);
  assert.equal(limits.admitClient('192.0.2.1'), 'per_client');
  limits.releaseClient('192.0.2.9');
  assert.equal(limits.admitClient('192.0.2.9'), undefined);
});

test('an allowed cap below the ordinary one never lowers a partner below everyone else', () => {
  const limits = new ConnectionLimits({ ...CONFIG, maxConnectionsPerAllowedClient: 1 }, () => true);
  assert.equal(limits.admitClient('192.0.2.1'), undefined);
  assert.equal(limits.admitClient('192.0.2.1'), undefined);
  assert.equal(limits.admitClient('192.0.2.1'), 'per_client');
});

test('the clean reserve: a client we would not relay has room up to maxConnections minus the reserve, its own slot included', () => {
  const limits = new ConnectionLimits(CONFIG, () => false);
  // 10 - floor(10 * 0.3) = 7 slots for anyone.
  for (let i = 0; i < 7; i++) limits.admit();
  assert.equal(limits.roomForUnrelayed(), undefined);
  limits.admit();
  assert.equal(limits.roomForUnrelayed(), 'reserve');
  limits.release();
  assert.equal(limits.roomForUnrelayed(), undefined);
});

test('a reserve of 0 keeps nothing back', () => {
  const limits = new ConnectionLimits({ ...CONFIG, cleanReserve: 0 }, () => false);
  for (let i = 0; i < 10; i++) limits.admit();
  assert.equal(limits.roomForUnrelayed(), undefined);
});
