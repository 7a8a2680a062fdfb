import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { SmtpReplyError } from '../../src/core/errors.js';
import type { BackendConnection } from '../../src/relay/backend-connection.js';
import type { PoolOptions } from '../../src/relay/pool.js';
import { BackendPool } from '../../src/relay/pool.js';
import type { FakeBackendOptions } from '../helpers/fake-backend.js';
import { FakeBackend } from '../helpers/fake-backend.js';
import { PATIENCE_MS } from '../helpers/wait-for.js';

async function setup(t: TestContext, overrides: Partial<PoolOptions> = {}, fake: FakeBackendOptions = {}): Promise<{ backend: FakeBackend; pool: BackendPool }> {
  const backend = await FakeBackend.start(fake);
  const pool = new BackendPool({
    backend: {
      host: '127.0.0.1',
      port: backend.port,
      heloName: 'tarpit.test',
      // None of these is the point of a test here: generous, so that a loaded CI box never fires one.
      timeouts: { connect: 10, greeting: 10, command: 10, dataInit: 10, dataBlock: 10, dataDone: 10 },
    },
    size: 4,
    warm: 0,
    idleTimeout: 30,
    acquireTimeout: 10,
    reconnect: { minDelay: 0.05, maxDelay: 0.2 },
    ...overrides,
  });
  t.after(async () => {
    await pool.close();
    await backend.stop();
  });
  return { backend, pool };
}

async function code(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (err) {
    assert.ok(err instanceof SmtpReplyError, String(err));
    return err.code;
  }
}

async function until(predicate: () => boolean, ms = PATIENCE_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) assert.fail('condition not met in time');
    await sleep(5);
  }
}

test('start() warms the spares, and acquire hands one out', async (t) => {
  const { backend, pool } = await setup(t, { warm: 2 });
  pool.start();
  await until(() => pool.health().idle === 2);
  assert.deepEqual(pool.health(), { ready: true, open: 2, idle: 2, busy: 0, connecting: 0 });
  const conn = await pool.acquire();
  assert.equal(conn.alive, true);
  assert.equal(pool.health().busy, 1);
  await until(() => pool.health().idle === 2); // refilled
  assert.equal(backend.connections, 3);
  pool.release(conn);
});

test('50 concurrent acquires never open more than size connections', async (t) => {
  // The last of 50 waits for ten rounds of connect, XCLIENT, MAIL and QUIT: allow a slow machine plenty.
  const { backend, pool } = await setup(t, { size: 5, warm: 2, acquireTimeout: 60 });
  pool.start();
  let served = 0;
  const session = async (i: number): Promise<void> => {
    const conn = await pool.acquire();
    assert.ok(pool.health().open <= 5);
    await conn.xclient({ address: `192.0.2.${i + 1}`, port: 1000 + i, proto: 'ESMTP' });
    await conn.mailFrom(`s${i}@example.org`, {});
    await sleep(5);
    served++;
    pool.release(conn);
  };
  await Promise.all(Array.from({ length: 50 }, (_, i) => session(i)));
  assert.equal(served, 50);
  assert.ok(backend.maxActive <= 5, `backend saw ${backend.maxActive} sessions at once`);
  // One XCLIENT per backend connection: no connection carried two clients.
  assert.equal(backend.commands('XCLIENT').length, 50);
  assert.ok(backend.connections >= 50);
});

test('acquire waits for a slot, then fails with TARPIT_ERR_POOL_EXHAUSTED', async (t) => {
  const { pool } = await setup(t, { size: 1, warm: 1, acquireTimeout: 0.2 });
  // The first acquire takes a warmed spare: opening one inside the 0.2 s could fail on a loaded machine.
  pool.start();
  await until(() => pool.health().idle === 1);
  const held = await pool.acquire();
  const started = Date.now();
  assert.equal(await code(pool.acquire()), 'TARPIT_ERR_POOL_EXHAUSTED');
  assert.ok(Date.now() - started >= 150);
  pool.release(held);
});

test('a waiter is served once a slot frees', async (t) => {
  // Its own pool with a patient acquireTimeout: the freed slot is a new connection (the old one
  // gets QUIT), and opening it on a loaded machine can take longer than the 0.2 s above.
  const { pool } = await setup(t, { size: 1 });
  const held = await pool.acquire();
  const next = pool.acquire();
  pool.release(held);
  const conn = await next;
  assert.notEqual(conn, held);
  pool.release(conn);
});

test('a released connection is closed with QUIT, never handed out again', async (t) => {
  const { backend, pool } = await setup(t, { warm: 1 });
  pool.start();
  const first = await pool.acquire();
  await first.xclient({ address: '192.0.2.1', port: 1, proto: 'ESMTP' });
  pool.release(first);
  await first.closed;
  assert.equal(backend.commands('QUIT').length, 1);
  const second = await pool.acquire();
  assert.notEqual(second, first);
  await second.xclient({ address: '192.0.2.2', port: 2, proto: 'ESMTP' });
  assert.equal(backend.lines.filter((l) => l.startsWith('XCLIENT')).length, 2);
  pool.release(second);
});

test('an idle spare the backend closed is not handed out', async (t) => {
  const { backend, pool } = await setup(t, { warm: 1 });
  pool.start();
  await until(() => pool.health().idle === 1);
  backend.dropAll();
  // The pool notices the close, drops the spare and warms a replacement.
  await until(() => backend.connections === 2 && pool.health().idle === 1);
  assert.equal(pool.health().open, 1);
  const conn = await pool.acquire();
  assert.equal(conn.alive, true);
  await conn.xclient({ address: '192.0.2.1', port: 1, proto: 'ESMTP' });
  assert.equal(backend.commands('XCLIENT').length, 1);
  pool.release(conn);
});

test('a down backend fails acquire fast with TARPIT_ERR_BACKEND_UNAVAILABLE, and the pool recovers', async (t) => {
  // Far apart, so that "fast" holds on a stalled machine and still proves acquireTimeout was not waited for.
  const { backend, pool } = await setup(t, { warm: 1, acquireTimeout: 60 });
  await backend.stop();
  pool.start();
  const started = Date.now();
  assert.equal(await code(pool.acquire()), 'TARPIT_ERR_BACKEND_UNAVAILABLE');
  assert.ok(Date.now() - started < 20_000, 'did not wait for acquireTimeout');
  const health = pool.health();
  assert.equal(health.ready, false);
  assert.match(health.reason ?? '', /unavailable/);
  await backend.restart();
  await until(() => pool.health().ready && pool.health().idle === 1);
  const conn = await pool.acquire();
  assert.equal(conn.alive, true);
  pool.release(conn);
});

test('a backend without XCLIENT makes the pool unready and probe() say why', async (t) => {
  const { pool } = await setup(t, { warm: 1 }, { xclient: false });
  const err = await pool.probe().then(
    () => assert.fail('probe succeeded'),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SmtpReplyError);
  assert.equal(err.code, 'TARPIT_ERR_BACKEND_NO_XCLIENT');
  assert.match((err.cause as Error).message, /smtpd_authorized_xclient_hosts/);
  assert.equal(pool.health().ready, false);
  assert.equal(await code(pool.acquire()), 'TARPIT_ERR_BACKEND_NO_XCLIENT');
});

test('probe() keeps its connection as a spare when one is wanted', async (t) => {
  const { backend, pool } = await setup(t, { warm: 1 });
  await pool.probe();
  assert.equal(pool.health().idle, 1);
  const conn = await pool.acquire();
  assert.equal(backend.connections, 1);
  pool.release(conn);
});

test('idle spares are closed after idleTimeout and replaced', async (t) => {
  const { backend, pool } = await setup(t, { warm: 1, idleTimeout: 0.15 });
  pool.start();
  await until(() => pool.health().idle === 1);
  await until(() => backend.commands('QUIT').length >= 1);
  await until(() => pool.health().idle === 1);
  assert.ok(backend.connections >= 2);
  assert.ok(backend.active <= 1);
});

test('close() rejects waiters with TARPIT_ERR_SHUTTING_DOWN and quits spares', async (t) => {
  // Patient: the waiter must be rejected by close(), never by its own timeout.
  const { backend, pool } = await setup(t, { size: 1, warm: 1, acquireTimeout: 60 });
  pool.start();
  const held: BackendConnection = await pool.acquire();
  const waiting = code(pool.acquire());
  await pool.close();
  assert.equal(await waiting, 'TARPIT_ERR_SHUTTING_DOWN');
  assert.equal(await code(pool.acquire()), 'TARPIT_ERR_SHUTTING_DOWN');
  assert.equal(pool.health().ready, false);
  pool.release(held);
  await held.closed;
  await until(() => backend.sockets.size === 0);
});

test('maxPerGroup: a network at its share is refused at once with TARPIT_ERR_BACKEND_GROUP_BUSY; others still get connections', async (t) => {
  // acquireTimeout far above anything measured: a refusal that waited for it would show.
  const { pool } = await setup(t, { size: 4, maxPerGroup: 2, acquireTimeout: 60 });
  const a1 = await pool.acquire({ group: '192.0.2.0/24' });
  const a2 = await pool.acquire({ group: '192.0.2.0/24' });
  const started = performance.now();
  assert.equal(await code(pool.acquire({ group: '192.0.2.0/24' })), 'TARPIT_ERR_BACKEND_GROUP_BUSY');
  assert.ok(performance.now() - started < 5_000, 'refused without waiting for acquireTimeout');
  const b = await pool.acquire({ group: '198.51.100.0/24' });
  const trusted = await pool.acquire();
  assert.equal(pool.health().busy, 4);
  // Giving one back frees the network's share.
  pool.release(a1);
  const a3 = await pool.acquire({ group: '192.0.2.0/24' });
  for (const conn of [a2, a3, b, trusted]) pool.release(conn);
});

test('below half the pool taken a network may go past its share (a big sender\'s burst); once half is taken it is held to it', async (t) => {
  const { pool } = await setup(t, { size: 10, maxPerGroup: 2, acquireTimeout: 60 });
  const burst = [];
  // Five of ten: the fifth is still asked for below half.
  for (let i = 0; i < 5; i++) burst.push(await pool.acquire({ group: '192.0.2.0/24' }));
  assert.equal(await code(pool.acquire({ group: '192.0.2.0/24' })), 'TARPIT_ERR_BACKEND_GROUP_BUSY', 'half taken: back to its share');
  const other = await pool.acquire({ group: '198.51.100.0/24' });
  for (const conn of [...burst.splice(0, 4), other]) pool.release(conn);
  // One of ten taken again: room for the burst once more.
  const again = await pool.acquire({ group: '192.0.2.0/24' });
  for (const conn of [...burst, again]) pool.release(conn);
});

test('maxPerGroup counts a network\'s waiters too, and a failed wait gives its share back', async (t) => {
  const { pool } = await setup(t, { size: 1, warm: 1, maxPerGroup: 2, acquireTimeout: 0.3 });
  // The first acquire takes a warmed spare: opening one inside the 0.3 s could fail on a loaded machine.
  pool.start();
  await until(() => pool.health().idle === 1);
  const other = await pool.acquire({ group: '198.51.100.0/24' });
  const waiting = [code(pool.acquire({ group: '192.0.2.0/24' })), code(pool.acquire({ group: '192.0.2.0/24' }))];
  assert.equal(await code(pool.acquire({ group: '192.0.2.0/24' })), 'TARPIT_ERR_BACKEND_GROUP_BUSY', 'two waiting fill the share');
  assert.deepEqual(await Promise.all(waiting), ['TARPIT_ERR_POOL_EXHAUSTED', 'TARPIT_ERR_POOL_EXHAUSTED']);
  pool.release(other);
  const conn = await pool.acquire({ group: '192.0.2.0/24' });
  pool.release(conn);
});

test('an aborted wait gives up at once with the signal\'s reason, and serves nobody late', async (t) => {
  const { pool } = await setup(t, { size: 1, maxPerGroup: 1, acquireTimeout: 60 });
  const held = await pool.acquire({ group: '198.51.100.0/24' });
  const abort = new AbortController();
  const waiting = code(pool.acquire({ group: '192.0.2.0/24', signal: abort.signal }));
  const reason = new SmtpReplyError('TARPIT_ERR_SESSION_TIMEOUT_TRANSACTION', { code: 451, enhanced: '4.4.2', text: 'ended' });
  abort.abort(reason);
  assert.equal(await waiting, 'TARPIT_ERR_SESSION_TIMEOUT_TRANSACTION');
  // Its group's share is free again, and the freed slot goes to the next one.
  const next = pool.acquire({ group: '192.0.2.0/24' });
  pool.release(held);
  pool.release(await next);
  assert.equal(await code(pool.acquire({ signal: abort.signal })), 'TARPIT_ERR_SESSION_TIMEOUT_TRANSACTION', 'an aborted signal refuses at once');
});
