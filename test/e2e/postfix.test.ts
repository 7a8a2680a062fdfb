/**
 * The proxy in front of a REAL Postfix 3.7 (test/helpers/postfix.ts): XCLIENT hands Postfix each
 * client's own address and HELO, so Postfix's relay control, recipient checks and logs keep working
 * (docs/design.md §1, §4.2); bodies arrive intact; DATA that Postfix would split into two messages is refused
 * or normalised (docs/design.md §4.4); a backend that refuses XCLIENT is never relayed through.
 *
 * Needs root and the postfix package: skipped on a bare dev machine, a failure in CI (requireTool).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { canRunPostfix, startPostfix, type PostfixInstance, type PostfixOptions } from '../helpers/postfix.js';
import { findTool } from '../helpers/require-tool.js';
import { SmtpClient, wireBody, type TestReply } from '../helpers/smtp-client.js';
import { startProxy, withProxy } from '../helpers/with-proxy.js';

const execFileAsync = promisify(execFile);


/** One Postfix per describe block, started by the first test that needs it, stopped by the block's after(). */
function sharedPostfix(options: PostfixOptions): { get(): Promise<PostfixInstance> } {
  let instance: Promise<PostfixInstance> | undefined;
  after(async () => {
    if (instance) await (await instance.catch(() => undefined))?.stop();
  });
  return { get: () => (instance ??= startPostfix(options)) };
}

/** Splits a delivered message (LF line ends, as virtual(8) writes it) into its header and body. */
function splitMessage(text: string): { header: string; body: string } {
  const i = text.indexOf('\n\n');
  return i === -1 ? { header: text, body: '' } : { header: text.slice(0, i + 1), body: text.slice(i + 2) };
}

function messagesWithSubject(messages: string[], subject: string): string[] {
  const re = new RegExp(`^Subject: ${subject.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm');
  return messages.filter((m) => re.test(splitMessage(m).header));
}

/**
 * Polls `user`'s mailbox until a message with this subject is there (waitForMessages counts messages,
 * and earlier tests in the block may already have filled the mailbox); then a short grace for strays.
 */
async function waitForSubject(pf: PostfixInstance, user: string, subject: string, timeoutMs = 30_000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = messagesWithSubject(await pf.readMailbox(user), subject);
    if (found.length > 0) {
      await sleep(300);
      return messagesWithSubject(await pf.readMailbox(user), subject);
    }
    if (Date.now() > deadline) throw new Error(`no message "${subject}" for ${user} within ${timeoutMs} ms\nmaillog:\n${(await pf.log()).split('\n').slice(-30).join('\n')}`);
    await sleep(50);
  }
}

/** Unique per test run, so a subject names one message. */
const RUN = `${process.pid}-${Date.now().toString(36)}`;

function show(reply: TestReply | undefined): string {
  return reply ? reply.lines.join(' | ') : '(none)';
}

describe('proxy in front of Postfix with XCLIENT (mynetworks = 127.0.0.1/32, the proxy trusted)', () => {
  const postfix = sharedPostfix({
    xclientHosts: '127.0.0.1',
    mynetworks: '127.0.0.1/32',
    // The harness's `error` transport would refuse a foreign recipient at RCPT for everyone, hiding whether
    // relay control let it through; `discard` lets RCPT answer what relay control decided, and still
    // nothing leaves the machine.
    extraMain: { default_transport: 'discard:foreign mail discarded in tests', relay_transport: 'discard:foreign mail discarded in tests' },
  });

  test('XCLIENT: Postfix records the client\'s address and HELO, not the proxy\'s', async (t) => {
    if (!canRunPostfix(t)) return;
    const pf = await postfix.get();
    const subject = `xclient ${RUN}`;
    await withProxy({ backendPort: pf.port }, async (p) => {
      const client = await SmtpClient.open({ port: p.port, localAddress: '127.0.5.9' });
      t.after(() => client.destroy());
      assert.equal((await client.command('EHLO client-helo.example')).code, 250);
      // An unknown recipient in the same transaction makes Postfix log a NOQUEUE line with helo=<…>.
      const r = await client.send('sender@client.example', ['alice@local.test', 'nobody@local.test'], wireBody(`Subject: ${subject}\n\nhello\n`));
      assert.equal(r.rcpt[0]?.code, 250, show(r.rcpt[0]));
      assert.equal(r.rcpt[1]?.code, 550, show(r.rcpt[1]));
      assert.equal(r.end?.code, 250, show(r.end));
      await client.quit();
    });
    const delivered = await waitForSubject(pf, 'alice', subject);
    assert.equal(delivered.length, 1);
    const { header } = splitMessage(delivered[0]!);
    const received = header.split(/\n(?![ \t])/).filter((h) => h.startsWith('Received:'));
    assert.equal(received.length, 1, header);
    assert.match(received[0]!, /^Received: from client-helo\.example \(unknown \[127\.0\.5\.9\]\)/);
    assert.doesNotMatch(delivered[0]!, /127\.0\.0\.1/, 'the proxy\'s address must not appear in the delivered message');

    const queued = await pf.waitForLog(/: client=unknown\[127\.0\.5\.9\]/, 5_000);
    const queueId = /\]: ([0-9A-F]+): client=/.exec(queued)?.[1];
    assert.ok(queueId !== undefined, queued);
    const reject = await pf.waitForLog(/: reject: RCPT from unknown\[127\.0\.5\.9\].*to=<nobody@local\.test>/, 5_000);
    assert.match(reject, /proto=ESMTP helo=<client-helo\.example>/);
    const sent = await pf.waitForLog(new RegExp(`${queueId}: to=<alice@local\\.test>.*status=sent`), 10_000);
    assert.ok(sent);
    // The proxy's own connection is the only place 127.0.0.1 shows up: never as the message's client.
    assert.doesNotMatch(await pf.log(), new RegExp(`${queueId}: client=unknown\\[127\\.0\\.0\\.1\\]`));
  });

  test('no open relay: a foreign recipient gets the same 554 5.7.1 through the proxy as directly, although the proxy\'s own address may relay', async (t) => {
    if (!canRunPostfix(t)) return;
    const pf = await postfix.get();
    const rcptFrom = async (port: number, localAddress: string): Promise<TestReply> => {
      const client = await SmtpClient.open({ port, localAddress });
      try {
        assert.equal((await client.command('EHLO relay-test.example')).code, 250);
        const mail = await client.command('MAIL FROM:<sender@relay-test.example>');
        assert.equal(mail.code, 250, show(mail));
        const rcpt = await client.command('RCPT TO:<someone@foreign.example>');
        // Never DATA: nothing is queued, whatever the answer was.
        assert.equal((await client.command('RSET')).code, 250);
        await client.quit();
        return rcpt;
      } finally {
        client.destroy();
      }
    };

    const viaProxy = await withProxy({ backendPort: pf.port }, (p) => rcptFrom(p.port, '127.0.5.10'));
    const direct = await rcptFrom(pf.port, '127.0.5.10');
    const fromProxyAddress = await rcptFrom(pf.port, '127.0.0.1');
    t.diagnostic(`via proxy from 127.0.5.10: ${show(viaProxy)}`);
    t.diagnostic(`direct from 127.0.5.10:    ${show(direct)}`);
    t.diagnostic(`direct from 127.0.0.1:     ${show(fromProxyAddress)}`);

    assert.equal(direct.code, 554);
    assert.equal(direct.enhanced, '5.7.1');
    assert.match(direct.text, /Relay access denied/);
    assert.equal(viaProxy.code, direct.code);
    assert.equal(viaProxy.enhanced, direct.enhanced);
    assert.equal(viaProxy.text, direct.text);
    // The hole XCLIENT closes: the proxy's own address is in mynetworks and may relay.
    assert.equal(fromProxyAddress.code, 250, show(fromProxyAddress));
    assert.match(await pf.log(), /NOQUEUE: reject: RCPT from unknown\[127\.0\.5\.10\]: 554 5\.7\.1 <someone@foreign\.example>: Relay access denied/);
  });

  test('a local recipient gets the body intact: 8-bit UTF-8 text and lines starting with "."', async (t) => {
    if (!canRunPostfix(t)) return;
    const pf = await postfix.get();
    const subject = `body ${RUN}`;
    const bodyText = [
      'Grüße aus Köln — ÄÖÜ ß € 日本語 🙂',
      '.leading dot',
      '..two leading dots',
      '.',
      '. dot and space',
      'line with trailing spaces   ',
      '',
      'last line',
      '',
    ].join('\n');
    const text = `From: sender@client.example\nTo: bob@local.test\nSubject: ${subject}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n${bodyText}`;
    await withProxy({ backendPort: pf.port }, async (p) => {
      const client = await SmtpClient.open({ port: p.port, localAddress: '127.0.5.11' });
      t.after(() => client.destroy());
      const ehlo = await client.command('EHLO body-test.example');
      assert.match(ehlo.text, /8BITMIME/);
      assert.equal((await client.command('MAIL FROM:<sender@client.example> BODY=8BITMIME')).code, 250);
      assert.equal((await client.command('RCPT TO:<bob@local.test>')).code, 250);
      assert.equal((await client.command('DATA')).code, 354);
      client.write(Buffer.from(wireBody(text), 'utf8'));
      client.write('.\r\n');
      const end = await client.read();
      assert.equal(end.code, 250, show(end));
      await client.quit();
    });
    const [delivered] = await waitForSubject(pf, 'bob', subject);
    assert.ok(delivered !== undefined);
    assert.equal(splitMessage(delivered).body, bodyText);
  });

  test('recipient replies pass through: an unknown local user gets Postfix\'s 550 5.1.1 at RCPT, the valid one is delivered', async (t) => {
    if (!canRunPostfix(t)) return;
    const pf = await postfix.get();
    const subject = `rcpt ${RUN}`;
    const unknownDirect = await (async () => {
      const client = await SmtpClient.open({ port: pf.port, localAddress: '127.0.5.12' });
      try {
        await client.command('EHLO rcpt-test.example');
        await client.command('MAIL FROM:<sender@rcpt-test.example>');
        const r = await client.command('RCPT TO:<nobody@local.test>');
        await client.quit();
        return r;
      } finally {
        client.destroy();
      }
    })();
    await withProxy({ backendPort: pf.port }, async (p) => {
      const client = await SmtpClient.open({ port: p.port, localAddress: '127.0.5.12' });
      t.after(() => client.destroy());
      await client.command('EHLO rcpt-test.example');
      const r = await client.send('sender@rcpt-test.example', ['nobody@local.test', 'alice@local.test'], wireBody(`Subject: ${subject}\n\nfor alice only\n`));
      t.diagnostic(`RCPT nobody via proxy: ${show(r.rcpt[0])}; direct: ${show(unknownDirect)}`);
      assert.equal(r.rcpt[0]?.code, 550);
      assert.equal(r.rcpt[0]?.enhanced, '5.1.1');
      assert.match(r.rcpt[0]?.text ?? '', /<nobody@local\.test>: Recipient address rejected: User unknown/);
      assert.equal(r.rcpt[0]?.text, unknownDirect.text);
      assert.equal(r.rcpt[1]?.code, 250, show(r.rcpt[1]));
      assert.equal(r.end?.code, 250, show(r.end));
      await client.quit();
    });
    const delivered = await waitForSubject(pf, 'alice', subject);
    assert.equal(delivered.length, 1);
    assert.match(delivered[0]!, /^Delivered-To: alice@local\.test$/m);
  });

  describe('smuggling: end-of-data look-alikes inside one DATA', () => {
    const VARIANTS: ReadonlyArray<readonly [string, string]> = [
      ['LF.LF', '\n.\n'],
      ['LF.CRLF', '\n.\r\n'],
      ['CRLF.LF', '\r\n.\n'],
      ['CR.CR', '\r.\r'],
      ['CRLF.CR', '\r\n.\r'],
    ];
    const SMUGGLED = 'MAIL FROM:<evil@spoofed.example>\r\nRCPT TO:<bob@local.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n';
    /** The DATA content (before the client's own CRLF.CRLF) for one variant. */
    const payload = (subject: string, seq: string): string => `Subject: ${subject}\r\n\r\nfirst line${seq}${SMUGGLED}`;

    /** One smuggling attempt through the proxy; returns the reply to the final dot. */
    const attempt = async (port: number, subject: string, seq: string): Promise<TestReply | undefined> => {
      const client = await SmtpClient.open({ port, localAddress: '127.0.5.13' });
      try {
        await client.command('EHLO smuggler.example');
        const r = await client.send('sender@smuggler.example', ['alice@local.test'], payload(subject, seq));
        assert.equal(r.rcpt[0]?.code, 250, show(r.rcpt[0]));
        // The session goes on after the refusal: no command of the payload was run.
        assert.equal((await client.command('NOOP')).code, 250);
        await client.quit();
        return r.end;
      } finally {
        client.destroy();
      }
    };

    const smuggledForBob = (messages: string[]): string[] => messages.filter((m) => /^Subject: smuggled$/m.test(splitMessage(m).header));

    test('default config (reject): 550 5.5.2 and nothing delivered to alice or bob; normalize: one message, to alice only', async (t) => {
      if (!canRunPostfix(t)) return;
      const pf = await postfix.get();
      const aliceBefore = (await pf.readMailbox('alice')).length;
      const bobBefore = (await pf.readMailbox('bob')).length;

      await withProxy({ backendPort: pf.port }, async (p) => {
        for (const [name, seq] of VARIANTS) {
          const end = await attempt(p.port, `reject ${name} ${RUN}`, seq);
          assert.equal(end?.code, 550, `${name}: ${show(end)}`);
          assert.equal(end?.enhanced, '5.5.2', `${name}: ${show(end)}`);
        }
      });

      const normalized = new Map<string, string>();
      await withProxy({ backendPort: pf.port, config: { smtp: { bareLineEndings: 'normalize' } } }, async (p) => {
        for (const [name, seq] of VARIANTS) {
          const subject = `normalize ${name} ${RUN}`;
          const end = await attempt(p.port, subject, seq);
          assert.equal(end?.code, 250, `${name}: ${show(end)}`);
          normalized.set(name, subject);
        }
      });

      // One message per normalize variant reaches alice; give any stray (smuggled) message time to land too.
      const alice = await pf.waitForMessages('alice', aliceBefore + VARIANTS.length, 30_000);
      await sleep(1_500);
      const aliceNew = (await pf.readMailbox('alice')).slice(aliceBefore);
      const bobNew = (await pf.readMailbox('bob')).slice(bobBefore);
      assert.equal(alice.length, aliceBefore + VARIANTS.length);
      assert.equal(aliceNew.length, VARIANTS.length, `alice got ${aliceNew.length} new message(s), expected one per normalize variant`);
      for (const [name] of VARIANTS) {
        assert.equal(messagesWithSubject(aliceNew, `reject ${name} ${RUN}`).length, 0, `${name}: a rejected message was delivered`);
        const [m] = messagesWithSubject(aliceNew, normalized.get(name)!);
        assert.ok(m !== undefined, `${name}: normalised message not delivered`);
        // The would-be second message is plain body text of the first one.
        assert.match(splitMessage(m).body, /^MAIL FROM:<evil@spoofed\.example>$/m, `${name}: ${JSON.stringify(splitMessage(m).body)}`);
      }
      assert.deepEqual(smuggledForBob(bobNew), [], 'no smuggled message may reach bob');
      assert.equal(bobNew.length, 0);
      // Postfix never queued a message from the smuggled sender (qmgr logs from=<…> for every queued one).
      assert.doesNotMatch(await pf.log(), /qmgr\[\d+\]: [0-9A-F]+: from=<evil@spoofed\.example>/);
    });

    test('control (diagnostic only): the same bytes sent straight to Postfix', async (t) => {
      if (!canRunPostfix(t)) return;
      const pf = await postfix.get();
      const bobBefore = smuggledForBob(await pf.readMailbox('bob')).length;
      for (const [name, seq] of VARIANTS) {
        // The short per-reply timeout is how the loop below ends; inside the try, a loaded machine's slow greeting only thins the diagnostic.
        let client: SmtpClient | undefined;
        const replies: string[] = [];
        try {
          client = await SmtpClient.open({ port: pf.port, localAddress: '127.0.5.14', timeout: 1_500 });
          await client.command('EHLO smuggler.example');
          await client.command('MAIL FROM:<sender@smuggler.example>');
          await client.command('RCPT TO:<alice@local.test>');
          await client.command('DATA');
          client.write(`${payload(`direct ${name} ${RUN}`, seq)}.\r\n`);
          for (;;) replies.push(show(await client.read()));
        } catch {
          // no further reply within 1.5 s
        } finally {
          await client?.quit();
        }
        t.diagnostic(`direct ${name}: ${replies.join(' || ')}`);
      }
      await sleep(1_500);
      const smuggled = smuggledForBob(await pf.readMailbox('bob')).length - bobBefore;
      t.diagnostic(`direct to Postfix: ${smuggled} of ${VARIANTS.length} variants delivered a "Subject: smuggled" message to bob`);
    });
  });
});

describe('backend that refuses XCLIENT to the proxy', () => {
  const postfix = sharedPostfix({ xclientHosts: '', mynetworks: '127.0.0.1/32' });

  const setXclientHosts = async (pf: PostfixInstance, value: string): Promise<void> => {
    const postconf = findTool('postconf');
    assert.ok(postconf !== undefined, 'postconf not found');
    await execFileAsync(postconf, ['-c', pf.configDir, '-e', `smtpd_authorized_xclient_hosts = ${value}`]);
    await pf.restart();
  };

  test('start-up probe: starting the proxy fails with TARPIT_ERR_BACKEND_NO_XCLIENT', async (t) => {
    if (!canRunPostfix(t)) return;
    const pf = await postfix.get();
    await assert.rejects(
      async () => {
        const running = await startProxy({ backendPort: pf.port });
        await running.stop();
      },
      (err: unknown) => {
        assert.equal((err as { code?: unknown }).code, 'TARPIT_ERR_BACKEND_NO_XCLIENT');
        assert.match(String((err as { cause?: { message?: unknown } }).cause?.message), /smtpd_authorized_xclient_hosts/);
        return true;
      },
    );
  });

  test('XCLIENT withdrawn while running: clients get 451 4.3.5, nothing is relayed under the proxy\'s address', async (t) => {
    if (!canRunPostfix(t)) return;
    const pf = await postfix.get();
    await setXclientHosts(pf, '127.0.0.1');
    const running = await startProxy({ backendPort: pf.port });
    t.after(() => running.stop());
    const sendOne = async (subject: string, to: string): Promise<{ mail: TestReply; end?: TestReply | undefined }> => {
      const client = await SmtpClient.open({ port: running.port, localAddress: '127.0.5.15' });
      try {
        await client.command('EHLO withdrawn.example');
        const r = await client.send('sender@withdrawn.example', [to], wireBody(`Subject: ${subject}\n\nx\n`));
        await client.quit();
        return { mail: r.mail, end: r.end };
      } finally {
        client.destroy();
      }
    };
    // Positive control: with XCLIENT allowed the same setup relays.
    const ok = await sendOne(`xclient allowed ${RUN}`, 'alice@local.test');
    assert.equal(ok.end?.code, 250, show(ok.end));
    await waitForSubject(pf, 'alice', `xclient allowed ${RUN}`);

    // The admin removes the proxy from smtpd_authorized_xclient_hosts; warm spares die with the restart.
    await setXclientHosts(pf, '');
    const logBefore = (await pf.log()).length;
    // Right after the restart the pool may still be backing off from the refused connects (451 4.4.1);
    // once it has talked to the new Postfix it knows the reason.
    const deadline = Date.now() + 30_000;
    let early = 0;
    while (!/XCLIENT/.test(running.proxy.readiness().reason ?? '')) {
      assert.ok(Date.now() < deadline, `pool never noticed: ${JSON.stringify(running.proxy.readiness())}`);
      const r = await sendOne(`xclient withdrawn early ${early++} ${RUN}`, 'someone@foreign.example');
      assert.equal(r.mail.code, 451, show(r.mail));
      await sleep(100);
    }
    t.diagnostic(`${early} early attempt(s) before the pool reported: ${running.proxy.readiness().reason ?? ''}`);
    for (let i = 0; i < 3; i++) {
      const r = await sendOne(`xclient withdrawn ${i} ${RUN}`, 'someone@foreign.example');
      t.diagnostic(`attempt ${i}: MAIL ${show(r.mail)}`);
      assert.equal(r.mail.code, 451, show(r.mail));
      assert.equal(r.mail.enhanced, '4.3.5', show(r.mail));
      assert.equal(r.end, undefined);
    }
    const logAfter = (await pf.log()).slice(logBefore);
    assert.doesNotMatch(logAfter, /foreign\.example/, 'no foreign recipient was even offered to Postfix');
    assert.doesNotMatch(logAfter, /: client=/, 'nothing was queued');
    assert.equal(running.proxy.readiness().ready, false);
  });
});
