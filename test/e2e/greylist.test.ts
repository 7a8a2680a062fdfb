/**
 * Greylisting on the relay path (issue 6), through the real proxy on
 * loopback with a minimum retry delay of 3 s: a triplet's first RCPT gets
 * 451 4.7.1 before the backend hears of the session (no XCLIENT, no message),
 * a retry inside the delay is told again, a retry after it is relayed and
 * lets the client's /24 through at once; the allow list is never greylisted.
 * Then the real thing: a second Postfix's smtp client (1–2 s backoff) is
 * deferred and delivers by its own retry, while a bot that tries once gets
 * nothing through.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { policyDir, type TestPolicy } from '../helpers/policy-dir.js';
import { canRunPostfix, startPostfix } from '../helpers/postfix.js';
import { delta, scrape } from '../helpers/scrape.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { sessionOf, withProxy } from '../helpers/with-proxy.js';

/**
 * Seconds. A retry "inside the delay" is a whole session after the first try:
 * the delay must outlast that on a loaded machine.
 */
const MIN_DELAY = 3;
const GREYLISTING: TestPolicy = {
  allow: ['127.0.41.0/24'],
  policy: { greylisting: { enabled: true, minDelay: MIN_DELAY, pendingExpiry: 60, passedExpiry: 600, network: { ipv4: 24, ipv6: 64 } } },
};
const GREYLIST = 'smtp_tarpit_greylist_total';

/** One try: EHLO, MAIL, one RCPT; the RCPT's reply, then QUIT. */
async function tryRcpt(port: number, localAddress: string, from: string, to: string): Promise<{ mail: number; rcpt: string }> {
  const c = await SmtpClient.open({ port, localAddress, timeout: 5000 });
  try {
    assert.equal((await c.command('EHLO client.example')).code, 250);
    const mail = await c.command(`MAIL FROM:<${from}>`);
    const rcpt = await c.command(`RCPT TO:<${to}>`);
    return { mail: mail.code, rcpt: `${rcpt.code} ${rcpt.enhanced ?? '-'} ${rcpt.text}` };
  } finally {
    await c.quit();
  }
}

async function deliver(port: number, localAddress: string, from: string, to: string, subject: string) {
  const c = await SmtpClient.open({ port, localAddress, timeout: 5000 });
  try {
    assert.equal((await c.command('EHLO client.example')).code, 250);
    return await c.send(from, [to], wireBody(`Subject: ${subject}\n\nhello\n`));
  } finally {
    await c.quit();
  }
}

test('a first try is greylisted before the backend hears of it; a retry after minDelay is relayed and lets its /24 through; the allow list never waits', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, GREYLISTING);
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    const before = await scrape(p.metricsPort);

    const first = await tryRcpt(p.port, '127.0.40.1', 'Sender@Example.org', 'rcpt@example.net');
    assert.equal(first.mail, 250, 'MAIL is answered: greylisting decides per recipient');
    assert.equal(first.rcpt, '451 4.7.1 Greylisted, please try again later');
    assert.equal(backend.connections.size, 0, 'no backend connection was given the client (no XCLIENT)');
    const line = await sessionOf(p, '127.0.40.1');
    const messages = line.messages as { rcpt: { address: string; reply: string }[] }[];
    assert.deepEqual(messages[0]?.rcpt, [{ address: 'rcpt@example.net', reply: '451 4.7.1 Greylisted, please try again later' }]);

    const early = await tryRcpt(p.port, '127.0.40.1', 'sender@example.org', 'RCPT@example.net');
    assert.equal(early.rcpt, '451 4.7.1 Greylisted, please try again later', 'a retry inside minDelay (the triplet is case-blind)');

    await sleep(MIN_DELAY * 1000 + 100);
    const retry = await deliver(p.port, '127.0.40.1', 'sender@example.org', 'rcpt@example.net', 'retried');
    assert.equal(retry.rcpt[0]?.code, 250, JSON.stringify(retry));
    assert.equal(retry.end?.code, 250, JSON.stringify(retry));
    assert.equal(backend.messages.length, 1);
    assert.equal(backend.messages[0]!.clientAddress, '127.0.40.1');

    // The network passed: a neighbour with another sender and recipient is relayed at once.
    const neighbour = await deliver(p.port, '127.0.40.99', 'other@example.com', 'someone@example.net', 'neighbour');
    assert.equal(neighbour.end?.code, 250, JSON.stringify(neighbour));
    // Another /24 starts from scratch.
    const stranger = await tryRcpt(p.port, '127.0.42.1', 'other@example.com', 'someone@example.net');
    assert.match(stranger.rcpt, /^451 4\.7\.1 Greylisted/);

    const friend = await deliver(p.port, '127.0.41.7', 'friend@example.org', 'rcpt@example.net', 'friend');
    assert.equal(friend.end?.code, 250, 'the allow list is never greylisted');
    assert.equal(backend.messages.length, 3);
    assert.deepEqual(
      backend.messages.map((m) => m.clientAddress),
      ['127.0.40.1', '127.0.40.99', '127.0.41.7'],
    );

    const after = await scrape(p.metricsPort);
    const outcomes = Object.fromEntries(['new', 'early', 'passed', 'allowlisted', 'expired'].map((o) => [o, delta(before, after, GREYLIST, { outcome: o })]));
    assert.deepEqual(outcomes, { new: 2, early: 1, passed: 1, allowlisted: 1, expired: 0 });
  });
});

test('a sender the backend refuses, held back while greylisted: every recipient after the pass gets the refusal, never a RCPT without MAIL', async (t) => {
  const backend = await startBackend({ mail: (a) => (a.startsWith('refused@') ? { code: 550, text: '5.1.8 Sender address rejected' } : undefined) });
  t.after(() => backend.close());
  const policies = policyDir(t, GREYLISTING);
  await withProxy({ backendPort: backend.port, config: { policies } }, async (p) => {
    for (const to of ['a@example.net', 'b@example.net']) assert.equal((await tryRcpt(p.port, '127.0.42.1', 'refused@example.org', to)).rcpt.slice(0, 3), '451');
    await sleep(MIN_DELAY * 1000 + 100);
    const c = await SmtpClient.open({ port: p.port, localAddress: '127.0.42.1', timeout: 5000 });
    await c.command('EHLO client.example');
    assert.equal((await c.command('MAIL FROM:<refused@example.org>')).code, 250, 'held back: the backend has not heard it yet');
    const first = await c.command('RCPT TO:<a@example.net>');
    const second = await c.command('RCPT TO:<b@example.net>');
    await c.quit();
    assert.deepEqual([first.code, first.enhanced], [550, '5.1.8'], 'the backend\'s refusal of the sender, at the first recipient that passed');
    assert.deepEqual([second.code, second.enhanced], [550, '5.1.8'], 'and again at the next one, not a 503 for a RCPT without MAIL');
    assert.equal(backend.messages.length, 0);
  });
});

test('a patient real MTA (a second Postfix relaying to the proxy) is greylisted and delivers by its own retry; a bot that tries once gets nothing through', async (t) => {
  if (!canRunPostfix(t)) return;
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, GREYLISTING);
  await withProxy({ backendPort: backend.port, config: { policies } }, async (p) => {
    // Every foreign domain goes to the proxy from 127.0.43.1; the helper's queue_run_delay and backoff (1–2 s) make the retry quick.
    const sender = await startPostfix({
      extraMain: { relayhost: `[127.0.0.1]:${p.port}`, default_transport: 'smtp', relay_transport: 'smtp', smtp_bind_address: '127.0.43.1' },
    });
    try {
      const bot = await tryRcpt(p.port, '127.0.44.1', 'bot@spam.example', 'rcpt@example.net');
      assert.match(bot.rcpt, /^451 4\.7\.1 Greylisted/);

      const submit = await SmtpClient.open({ port: sender.port, timeout: 5000 });
      assert.equal((await submit.command('EHLO submitter.example')).code, 250);
      const sent = await submit.send('patient@local.test', ['rcpt@example.net'], wireBody('Subject: from postfix\n\nwaited\n'));
      assert.equal(sent.end?.code, 250, JSON.stringify(sent));
      await submit.quit();

      const deferred = await sender.waitForLog(/status=deferred .*451 4\.7\.1 Greylisted/, 30_000);
      assert.match(deferred, /rcpt@example\.net/);
      assert.match(deferred, /in reply to RCPT TO command/);
      // Backoff is 1–2 s, but on a loaded 2-core machine Postfix's queue manager has once taken over 20 s to retry.
      await sender.waitForLog(/status=sent /, 60_000);
      assert.equal(backend.messages.length, 1, 'the MTA\'s message only: the bot never retried');
      const [message] = backend.messages;
      assert.equal(message!.clientAddress, '127.0.43.1');
      assert.equal(message!.from, 'patient@local.test');
      assert.deepEqual(message!.to, ['rcpt@example.net']);
      assert.match(message!.body.toString('latin1'), /^Subject: from postfix$/m);
    } finally {
      await sender.stop();
    }
  });
});
