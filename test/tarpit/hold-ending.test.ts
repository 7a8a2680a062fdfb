/**
 * After the end reply (hold-ending.ts, RFC 5321 §3.8): unless it is a 421,
 * the hold leaves the connection open for the client's QUIT, answers what
 * comes meanwhile at once, and keeps the outcome the end gave. Over real
 * loopback sockets (hold-harness.ts); the end grace is long (60 s) wherever
 * it must not race the test, so nothing depends on a short deadline.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Reply } from '../../src/core/reply.js';
import { Raw, until } from './raw-client.js';
import { profile, serve, type Harness } from './hold-harness.js';

/** What INSTANT's `end: allowlist` answers DATA when no observer does. */
const END = '451 4.7.1 Service temporarily unavailable, try again later';
const GREETED = '220 mx.test ESMTP\r\n250 mx.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n';
/** Long enough never to run out during a test. */
const LONG_GRACE = { endGrace: 60 };

/** Sends one command line and resolves with the reply line it gets (every reply after the end is one line). */
async function say(raw: Raw, line: string): Promise<string> {
  const from = raw.text.length;
  raw.write(`${line}\r\n`);
  await until(() => /^\d{3} [^\r]*\r\n$/m.test(raw.text.slice(from)), undefined, `reply to ${line} (have ${JSON.stringify(raw.text.slice(from))})`);
  return raw.text.slice(from);
}

/** Greets, sends MAIL and RCPT, and stops before DATA. */
async function envelope(h: Harness): Promise<Raw> {
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  for (const line of ['HELO c.example', 'MAIL FROM:<a@example.org>', 'RCPT TO:<b@example.net>']) await say(raw, line);
  assert.equal(raw.text, GREETED);
  return raw;
}

/** A client that sat the hold out and has DATA's end reply, `end`. */
async function ended(h: Harness, end = END): Promise<Raw> {
  const raw = await envelope(h);
  assert.equal(await say(raw, 'DATA'), `${end}\r\n`);
  return raw;
}

test('a survivor gets 451, sends QUIT, gets 221 and the close; the outcome is survived, with no hang-up', async (t) => {
  const h = await serve(t, { limits: LONG_GRACE });
  const raw = await ended(h);
  // Ended, not closing: the session's one timer entry is the end grace.
  assert.equal(h.sessions[0]!.closed, false);
  assert.equal(h.timers.size, 1);
  assert.ok(h.timers.nextDeadline! - performance.now() > 50_000, 'armed for the end grace');
  assert.equal(await say(raw, 'QUIT'), '221 2.0.0 Bye\r\n');
  await raw.waitClosed();
  assert.equal(raw.text, `${GREETED}${END}\r\n221 2.0.0 Bye\r\n`);
  const s = await h.summary();
  assert.equal(s.outcome, 'survived');
  assert.equal(s.hangup, undefined);
  assert.equal(s.stage, 'data', 'the furthest stage; QUIT does not count');
  assert.equal(s.commands, 5);
  assert.equal(h.timers.size, 0);
});

test('after the end nothing is held or opened: RSET and NOOP get 250, HELO, EHLO, MAIL, RCPT and DATA the end reply again, VRFY, HELP and unknown verbs 503', async (t) => {
  // The survivor's profile turns slow at the end: a reply that waited for it would miss the 3 s each `say` allows.
  const slow = profile('slow', { helo: 30, mail: 30, rcpt: 30, data: 30, other: 30 });
  const end: Reply = { code: 451, enhanced: '4.7.1', text: 'Come back later' };
  const h = await serve(t, {
    limits: LONG_GRACE,
    observer: {
      onSurvived: (session) => {
        session.setProfile(slow);
        return end;
      },
    },
  });
  const raw = await ended(h, '451 4.7.1 Come back later');
  const again = '451 4.7.1 Come back later\r\n';
  const answers: Array<[string, string]> = [
    ['RSET', '250 2.0.0 Ok\r\n'],
    ['NOOP', '250 2.0.0 Ok\r\n'],
    ['MAIL FROM:<c@example.org>', again],
    ['RCPT TO:<d@example.net>', again],
    ['DATA', again],
    ['EHLO c.example', again],
    ['HELO c.example', again],
    ['VRFY root', '503 5.5.1 Error: this session is over, send QUIT\r\n'],
    ['HELP', '503 5.5.1 Error: this session is over, send QUIT\r\n'],
    ['XYZZY', '503 5.5.1 Error: this session is over, send QUIT\r\n'],
  ];
  for (const [line, reply] of answers) assert.equal(await say(raw, line), reply, line);
  assert.equal(await say(raw, 'QUIT'), '221 2.0.0 Bye\r\n');
  await raw.waitClosed();
  const s = await h.summary();
  assert.equal(s.outcome, 'survived');
  assert.equal(s.profile, 'slow');
  assert.equal(s.mailFrom, 'a@example.org', 'a MAIL after the end opens no transaction and records nothing');
  assert.deepEqual(s.rcpts, ['b@example.net']);
  assert.equal(s.rcptCount, 1);
  assert.equal(s.errors, 0, 'nothing after the end is judged');
  assert.equal(s.commands, 4 + answers.length + 1);
});

test('silence after the end: 421 4.4.2 when the end grace is over, then the close; the outcome stays survived and the grace is neither held nor client time', async (t) => {
  const h = await serve(t, { limits: { endGrace: 0.3 } });
  const raw = await ended(h);
  await raw.waitClosed();
  assert.equal(raw.text, `${GREETED}${END}\r\n421 4.4.2 mx.test Error: timeout exceeded\r\n`);
  const s = await h.summary();
  assert.equal(s.outcome, 'survived');
  assert.equal(s.hangup, undefined);
  assert.equal(s.client.data, undefined, 'the client never had a turn at DATA: the wait for QUIT is not one');
  // Every moment before the end is held or the client's; the grace (at least 0.3 s: a queue timer never fires early) is neither.
  const accounted = s.heldSeconds + Object.values(s.client).reduce((a, b) => a + b, 0);
  assert.ok(s.seconds - accounted >= 0.29, `seconds ${s.seconds}, held and client ${accounted}`);
  assert.equal(h.timers.size, 0);
});

test('the end grace is armed once: commands after the end do not push it back, so a NOOP every few seconds cannot stretch the session', async (t) => {
  const h = await serve(t, { limits: LONG_GRACE });
  const raw = await ended(h);
  const deadline = h.timers.nextDeadline;
  for (let i = 0; i < 3; i++) {
    assert.equal(await say(raw, 'NOOP'), '250 2.0.0 Ok\r\n');
    assert.equal(h.timers.size, 1);
    assert.equal(h.timers.nextDeadline, deadline);
  }
  raw.socket.destroy();
  assert.equal((await h.summary()).outcome, 'survived');
});

test('after the end at most endCommands commands are answered, then 421 4.7.0 and the close; QUIT is answered whenever it comes', async (t) => {
  const h = await serve(t, { limits: LONG_GRACE });
  const chatty = await ended(h);
  chatty.write('NOOP\r\n'.repeat(12));
  await chatty.waitClosed();
  assert.equal(chatty.text, `${GREETED}${END}\r\n${'250 2.0.0 Ok\r\n'.repeat(10)}421 4.7.0 mx.test Error: too many commands\r\n`);
  const s = await h.summary(0);
  assert.equal(s.outcome, 'survived');
  assert.equal(s.hangup, undefined);

  const polite = await ended(h);
  polite.write(`${'RSET\r\n'.repeat(10)}QUIT\r\n`);
  await polite.waitClosed();
  assert.equal(polite.text, `${GREETED}${END}\r\n${'250 2.0.0 Ok\r\n'.repeat(10)}221 2.0.0 Bye\r\n`);
  assert.equal((await h.summary(1)).outcome, 'survived');
});

test('a client that leaves after the end reply without QUIT, by FIN or by reset, did not hang up: outcome survived, no hangup stage', async (t) => {
  const h = await serve(t, { limits: LONG_GRACE });
  const fin = await ended(h);
  fin.socket.end();
  const reset = await ended(h);
  reset.socket.resetAndDestroy();
  for (const i of [0, 1]) {
    const s = await h.summary(i);
    assert.equal(s.outcome, 'survived', `session ${i}`);
    assert.equal(s.hangup, undefined, `session ${i}`);
    assert.equal(s.stage, 'data');
  }
  await until(() => h.timers.size === 0, undefined, 'no timer entry left');
});

test('a 421 end still closes at once: a profile ending in 421, and an onSurvived answering 421', async (t) => {
  const byProfile = await serve(t, { profile: profile('go', {}, { kind: 'reply', code: 421, text: '4.7.0 Go away' }), limits: LONG_GRACE });
  const a = await ended(byProfile, '421 4.7.0 Go away');
  await a.waitClosed();
  assert.equal(a.text, `${GREETED}421 4.7.0 Go away\r\n`);
  assert.equal((await byProfile.summary()).outcome, 'survived');

  const byObserver = await serve(t, { limits: LONG_GRACE, observer: { onSurvived: () => ({ code: 421, enhanced: '4.7.0', text: 'Closing' }) } });
  const b = await ended(byObserver, '421 4.7.0 Closing');
  await b.waitClosed();
  assert.equal(b.text, `${GREETED}421 4.7.0 Closing\r\n`);
  assert.equal((await byObserver.summary()).outcome, 'survived');
});

test('QUIT pipelined right behind DATA gets the end reply, then 221, in order, and the close: whether DATA’s reply was held or not', async (t) => {
  for (const [name, delays] of [
    ['instant', {}],
    ['held', { data: 0.2 }],
  ] as const) {
    const h = await serve(t, { profile: profile(name, delays), limits: LONG_GRACE });
    const raw = await envelope(h);
    raw.write('DATA\r\nQUIT\r\n');
    await raw.waitClosed();
    assert.equal(raw.text, `${GREETED}${END}\r\n221 2.0.0 Bye\r\n`, name);
    const s = await h.summary();
    assert.equal(s.outcome, 'survived', name);
    assert.equal(s.hangup, undefined, name);
    assert.equal(s.commands, 5, name);
  }
});

test('shutdown: session.close() on an ended session writes its 421 at once and closes; the outcome stays survived', async (t) => {
  const h = await serve(t, { limits: LONG_GRACE });
  const raw = await ended(h);
  h.sessions[0]!.close({ code: 421, enhanced: '4.3.2', text: 'Service shutting down' });
  await raw.waitClosed();
  assert.equal(raw.text, `${GREETED}${END}\r\n421 4.3.2 Service shutting down\r\n`);
  const s = await h.summary();
  assert.equal(s.outcome, 'survived');
  assert.equal(h.timers.size, 0);
});
