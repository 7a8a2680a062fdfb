import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { SmtpReplyError, replyError } from '../../src/core/errors.js';
import type { BackendConnectionOptions } from '../../src/relay/backend-connection.js';
import { BackendConnection } from '../../src/relay/backend-connection.js';
import type { FakeBackendOptions } from '../helpers/fake-backend.js';
import { FakeBackend } from '../helpers/fake-backend.js';
import { PATIENCE_MS } from '../helpers/wait-for.js';

const CLIENT = { address: '192.0.2.7', port: 40123, name: 'mx.example.org', helo: 'mx.example.org', proto: 'ESMTP' } as const;

type Timeouts = BackendConnectionOptions['timeouts'];

// Generous: a timeout that is not the point of a test must never fire, even
// when a loaded CI box stalls this process for a second or two. It costs
// nothing while the fake backend answers.
const PATIENT: Timeouts = { connect: 10, greeting: 10, command: 10, dataInit: 10, dataBlock: 10, dataDone: 10 };

/** Short, for the tests where a silent backend must make one fire: a slow machine only makes it fire later. */
const QUICK = 0.3;

function optionsFor(backend: FakeBackend, timeouts: Partial<Timeouts> = {}): BackendConnectionOptions {
  return { host: '127.0.0.1', port: backend.port, heloName: 'tarpit.test', timeouts: { ...PATIENT, ...timeouts } };
}

async function setup(t: TestContext, fake: FakeBackendOptions = {}, timeouts: Partial<Timeouts> = {}): Promise<{ backend: FakeBackend; conn: BackendConnection }> {
  const backend = await FakeBackend.start(fake);
  t.after(() => backend.stop());
  const conn = await BackendConnection.open(optionsFor(backend, timeouts));
  t.after(() => conn.destroy());
  return { backend, conn };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<SmtpReplyError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof SmtpReplyError, `expected SmtpReplyError, got ${String(err)}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail(`expected ${code}, but it resolved`);
}

async function until(predicate: () => boolean, ms = PATIENCE_MS): Promise<void> {
  const end = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > end) assert.fail('condition not met in time');
    await sleep(5);
  }
}

test('a full transaction reaches the backend line for line, body byte for byte, dot-stuffed', async (t) => {
  const { backend, conn } = await setup(t, { extensions: ['SIZE 1000', '8BITMIME'] });
  assert.equal(conn.capabilities.get('SIZE')?.[0], '1000');
  await conn.xclient(CLIENT);
  assert.deepEqual(conn.capabilities.get('XCLIENT'), ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'LOGIN']);
  assert.equal((await conn.mailFrom('a@example.org', { size: 42, body: '8BITMIME', smtputf8: true })).code, 250);
  assert.equal((await conn.rcptTo('b@example.net')).code, 250);
  const body = Buffer.concat([
    Buffer.from('Subject: t\r\n\r\n.\r\n..\r\n.x\r\nmiddle\r\n'),
    Buffer.from([0xc3, 0xa9, 0xff, 0x0d, 0x0a]),
    Buffer.from('last'),
  ] as Uint8Array[]);
  const reply = await conn.data(Readable.from([body.subarray(0, 17), body.subarray(17)]));
  assert.deepEqual(reply, { code: 250, enhanced: '2.0.0', text: 'Ok: queued as Q1' });
  assert.deepEqual(backend.lines, [
    'EHLO tarpit.test',
    'XCLIENT ADDR=192.0.2.7 NAME=mx.example.org PORT=40123 PROTO=ESMTP',
    'EHLO mx.example.org',
    'MAIL FROM:<a@example.org> SIZE=42 BODY=8BITMIME',
    'RCPT TO:<b@example.net>',
    'DATA',
  ]);
  const expected = Buffer.concat([
    Buffer.from('Subject: t\r\n\r\n..\r\n...\r\n..x\r\nmiddle\r\n'),
    Buffer.from([0xc3, 0xa9, 0xff, 0x0d, 0x0a]),
    Buffer.from('last\r\n'),
  ] as Uint8Array[]);
  assert.equal(backend.messages.length, 1);
  assert.equal(backend.messages[0]?.toString('hex'), expected.toString('hex'));
  await conn.quit();
  assert.equal(backend.lines.at(-1), 'QUIT');
  assert.equal(conn.alive, false);
});

test('a rejected recipient is returned, not thrown, and the connection goes on', async (t) => {
  const { conn } = await setup(t, { rejectRcpt: /bad@/ });
  await conn.xclient(CLIENT);
  await conn.mailFrom('', {});
  const reply = await conn.rcptTo('bad@example.net');
  assert.equal(reply.code, 550);
  assert.equal(reply.enhanced, '5.1.1');
  assert.equal((await conn.rset()).code, 250);
  assert.equal(conn.alive, true);
});

test('a body error mid-stream never sends the dot: the error is rethrown unchanged and no message is recorded', async (t) => {
  const { backend, conn } = await setup(t);
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  await conn.rcptTo('b@example.net');
  const body = new PassThrough();
  const guard = replyError('TARPIT_ERR_BARE_LINE_ENDING');
  const sending = conn.data(body);
  await until(() => backend.commands('DATA').length === 1);
  body.write('Subject: partial\r\n\r\nfirst line\r\n');
  await sleep(20);
  body.destroy(guard);
  await assert.rejects(sending, (err) => err === guard);
  assert.equal(conn.alive, false);
  await until(() => backend.sockets.size === 0);
  assert.equal(backend.messages.length, 0);
});

test('a body that closes without an error before its end never sends the dot', async (t) => {
  const { backend, conn } = await setup(t);
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  await conn.rcptTo('b@example.net');
  const body = new PassThrough();
  const sending = conn.data(body);
  body.write('Subject: partial\r\n');
  setTimeout(() => body.destroy(), 20);
  await assert.rejects(sending, /closed before its end/);
  await until(() => backend.sockets.size === 0);
  assert.equal(backend.messages.length, 0);
});

test('a non-354 answer to DATA is returned and the body is left untouched', async (t) => {
  const { backend, conn } = await setup(t, { replies: { DATA: '554 5.5.1 Error: no valid recipients\r\n' } });
  await conn.xclient(CLIENT);
  const body = new PassThrough();
  body.write('x\r\n');
  const reply = await conn.data(body);
  assert.deepEqual(reply, { code: 554, enhanced: '5.5.1', text: 'Error: no valid recipients' });
  assert.equal(body.readableLength, 3);
  assert.equal(body.listenerCount('data'), 0);
  assert.equal(conn.alive, true);
  assert.equal((await conn.rset()).code, 250);
  assert.equal(backend.messages.length, 0);
});

test('a large body is streamed with backpressure and arrives byte-exact', async (t) => {
  const { backend, conn } = await setup(t);
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  await conn.rcptTo('b@example.net');
  const lines: string[] = [];
  for (let i = 0; i < 60_000; i++) lines.push(i % 1000 === 0 ? '.dot line' : `line ${i} ${'x'.repeat(40)}`);
  const raw = lines.join('\r\n') + '\r\n';
  const chunks = Array.from({ length: Math.ceil(raw.length / 7919) }, (_, i) => Buffer.from(raw.slice(i * 7919, (i + 1) * 7919)));
  const reply = await conn.data(Readable.from(chunks));
  assert.equal(reply.code, 250);
  assert.equal(backend.messages[0]?.toString(), raw.replace(/^\./gm, '..'));
});

test('the backend closing mid-DATA is TARPIT_ERR_BACKEND_LOST', async (t) => {
  const { backend, conn } = await setup(t, { closeAfterBodyBytes: 10 });
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  await conn.rcptTo('b@example.net');
  const body = new PassThrough();
  const sending = conn.data(body);
  body.write('0123456789abcdef\r\n');
  await rejectsWith(sending, 'TARPIT_ERR_BACKEND_LOST');
  body.end('more\r\n'); // still writable by its owner: we removed our listeners
  assert.equal(backend.messages.length, 0);
});

test('a reply that does not come in time is TARPIT_ERR_BACKEND_LOST', async (t) => {
  const { conn } = await setup(t, { delay: (verb) => (verb === 'RCPT' ? Infinity : 0) }, { command: QUICK });
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  const err = await rejectsWith(conn.rcptTo('b@example.net'), 'TARPIT_ERR_BACKEND_LOST');
  // The message names the deadline that fired: the command timeout, whatever the machine's speed.
  assert.match(String((err.cause as Error).message), /no reply to rcpt within 0\.3s/);
  assert.equal(conn.alive, false);
  await rejectsWith(conn.rset(), 'TARPIT_ERR_BACKEND_LOST');
});

test('no reply to the final dot in time is TARPIT_ERR_BACKEND_LOST', async (t) => {
  const { conn } = await setup(t, { delay: (verb) => (verb === 'DOT' ? Infinity : 0) }, { dataDone: QUICK });
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  await conn.rcptTo('b@example.net');
  const err = await rejectsWith(conn.data(Readable.from([Buffer.from('hi\r\n')])), 'TARPIT_ERR_BACKEND_LOST');
  assert.match(String((err.cause as Error).message), /no reply to dot within 0\.3s/);
});

test('a backend without XCLIENT is TARPIT_ERR_BACKEND_NO_XCLIENT and gets no XCLIENT command', async (t) => {
  const { backend, conn } = await setup(t, { xclient: false });
  assert.equal(conn.supportsXclient(['ADDR']), false);
  await rejectsWith(conn.xclient(CLIENT), 'TARPIT_ERR_BACKEND_NO_XCLIENT');
  assert.equal(backend.commands('XCLIENT').length, 0);
});

test('XCLIENT answered 550 is TARPIT_ERR_BACKEND_NO_XCLIENT with the reply in its cause', async (t) => {
  const { conn } = await setup(t, { xclientReply: '550 5.7.0 Error: insufficient authorization\r\n' });
  const err = await rejectsWith(conn.xclient(CLIENT), 'TARPIT_ERR_BACKEND_NO_XCLIENT');
  assert.match((err.cause as Error).message, /550 5\.7\.0/);
});

test('a second XCLIENT on one connection is refused before it reaches the backend', async (t) => {
  const { backend, conn } = await setup(t);
  await conn.xclient(CLIENT);
  await assert.rejects(conn.xclient(CLIENT), SmtpReplyError);
  assert.equal(backend.commands('XCLIENT').length, 1);
});

test('an IPv6 client without HELO reaches the backend as IPV6: and an address literal', async (t) => {
  const { backend, conn } = await setup(t);
  await conn.xclient({ address: '2001:db8::1', port: 25, proto: 'SMTP' });
  assert.deepEqual(backend.lines.slice(1), ['XCLIENT ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE] PORT=25 PROTO=SMTP', 'EHLO [IPv6:2001:db8::1]']);
});

test('MAIL carries only the parameters the backend advertised', async (t) => {
  const { backend, conn } = await setup(t, { extensions: ['PIPELINING'] });
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', { size: 42, body: '8BITMIME', smtputf8: true });
  assert.equal(backend.lines.at(-1), 'MAIL FROM:<a@example.org>');
});

test('a backend that is not listening is TARPIT_ERR_BACKEND_UNAVAILABLE', async () => {
  const backend = await FakeBackend.start();
  const options = optionsFor(backend);
  await backend.stop();
  await rejectsWith(BackendConnection.open(options), 'TARPIT_ERR_BACKEND_UNAVAILABLE');
});

test('a greeting other than 220, or none in time, is TARPIT_ERR_BACKEND_UNAVAILABLE', async (t) => {
  const busy = await FakeBackend.start({ greeting: '554 5.3.2 busy\r\n' });
  t.after(() => busy.stop());
  await rejectsWith(BackendConnection.open(optionsFor(busy)), 'TARPIT_ERR_BACKEND_UNAVAILABLE');
  const mute = await FakeBackend.start({ greeting: '' });
  t.after(() => mute.stop());
  await rejectsWith(BackendConnection.open(optionsFor(mute, { greeting: QUICK })), 'TARPIT_ERR_BACKEND_UNAVAILABLE');
});

test('an idle connection the backend closes (421 timeout) is no longer alive', async (t) => {
  const { backend, conn } = await setup(t);
  assert.equal(conn.alive, true);
  backend.dropAll();
  await conn.closed;
  assert.equal(conn.alive, false);
  await rejectsWith(conn.mailFrom('a@example.org', {}), 'TARPIT_ERR_BACKEND_LOST');
});

test('a 421 reply is returned and marks the connection dead', async (t) => {
  const { conn } = await setup(t, { replies: { RCPT: '421 4.3.2 fake.test Service shutting down\r\n' } });
  await conn.xclient(CLIENT);
  await conn.mailFrom('a@example.org', {});
  const reply = await conn.rcptTo('b@example.net');
  assert.equal(reply.code, 421);
  assert.equal(conn.alive, false);
  await conn.quit(); // never throws, even on a dead connection
});

test("a refusal of the client's HELO after XCLIENT is passed through as the backend's reply", async (t) => {
  const { conn } = await setup(t, { ehloAfterXclient: '504 5.5.2 <bad>: Helo command rejected: need fully-qualified hostname\r\n' });
  const err = await rejectsWith(conn.xclient({ ...CLIENT, helo: 'bad' }), 'TARPIT_ERR_BACKEND_REPLY');
  assert.equal(err.reply.code, 504);
  assert.equal(err.reply.enhanced, '5.5.2');
});

test('a 421 in answer to XCLIENT (backend closing) is TARPIT_ERR_BACKEND_LOST, not NO_XCLIENT', async (t) => {
  const { conn } = await setup(t, { xclientReply: '421 4.4.2 fake.test Error: timeout exceeded\r\n' });
  await rejectsWith(conn.xclient(CLIENT), 'TARPIT_ERR_BACKEND_LOST');
  assert.equal(conn.alive, false);
});

test('a transaction is open from an accepted MAIL until the final reply or an accepted RSET, not after a refused MAIL', async (t) => {
  const { conn } = await setup(t, { rejectRcpt: /bad@/ });
  await conn.xclient(CLIENT);
  assert.equal(conn.inTransaction, false);
  await conn.mailFrom('a@example.org', {});
  assert.equal(conn.inTransaction, true);
  await conn.rcptTo('b@example.net');
  await conn.data(Readable.from([Buffer.from('Subject: one\r\n\r\nx\r\n')]));
  assert.equal(conn.inTransaction, false, 'over after the final reply: the next MAIL needs no RSET');
  await conn.mailFrom('a@example.org', {});
  await conn.rcptTo('bad@example.net');
  assert.equal(conn.inTransaction, true, 'abandoned transactions stay open until RSET');
  await conn.rset();
  assert.equal(conn.inTransaction, false);
});

test('MAIL and RCPT carry the address bytes given, A-labels and case kept, and no BODY= unless one is given (issue 12)', async (t) => {
  const { backend, conn } = await setup(t, { extensions: ['SIZE 1000', '8BITMIME', 'SMTPUTF8'] });
  await conn.xclient(CLIENT);
  await conn.mailFrom('s@XN--Bcher-kva.example', {});
  await conn.rcptTo('Alice@xn--bcher-kva.test');
  await conn.rset();
  await conn.mailFrom('s@xn--bcher-kva.example', { size: 42, body: '8BITMIME' });
  await conn.rset();
  await conn.mailFrom('s@bücher.example', { smtputf8: true });
  assert.deepEqual(backend.commands('MAIL'), [
    'MAIL FROM:<s@XN--Bcher-kva.example>',
    'MAIL FROM:<s@xn--bcher-kva.example> SIZE=42 BODY=8BITMIME',
    'MAIL FROM:<s@bücher.example> SMTPUTF8',
  ]);
  assert.deepEqual(backend.commands('RCPT'), ['RCPT TO:<Alice@xn--bcher-kva.test>']);
});
