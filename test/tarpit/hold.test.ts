/**
 * The hold over real loopback sockets (hold-harness.ts): a net.Server hands
 * each accepted (paused) socket to hold(); clients are plain net.connect
 * sockets. What follows the end reply is hold-ending.test.ts's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Raw, until } from './raw-client.js';
import { open, profile, serve } from './hold-harness.js';

test('the banner waits for the profile’s banner delay', async (t) => {
  const h = await serve(t, { profile: profile('slow-banner', { banner: 0.15 }) });
  // From before the connect: the server may accept before our 'connect' event runs.
  const start = performance.now();
  const c = await open(h.port);
  const banner = await c.read();
  const waited = performance.now() - start;
  assert.equal(banner.code, 220);
  assert.equal(banner.text, 'mx.test ESMTP');
  assert.ok(waited >= 150, `banner after ${waited.toFixed(1)} ms`);
  await c.quit();
  const s = await h.summary();
  assert.equal(s.outcome, 'quit');
  assert.ok(s.held.connect! >= 0.15, `held ${s.held.connect}`);
});

test('EHLO answers a short multi-line 250 (8BITMIME, SMTPUTF8) without PIPELINING, STARTTLS or AUTH; SIZE is still enforced', async (t) => {
  const h = await serve(t, { sizeLimit: 1_000_000 });
  const c = await open(h.port);
  await c.read();
  const ehlo = await c.command('EHLO client.example');
  assert.deepEqual(ehlo.lines, ['250-mx.test', '250-8BITMIME', '250 SMTPUTF8']);
  const helo = await c.command('HELO client.example');
  assert.deepEqual(helo.lines, ['250 mx.test']);
  const big = await c.command('MAIL FROM:<a@example.org> SIZE=2000000');
  assert.equal(big.code, 552);
  await c.quit();
});

test('a full walk to DATA: every reply waits its stage, DATA gets onSurvived’s reply instead of 354, QUIT then gets 221 and the close', async (t) => {
  const delays = { banner: 0.05, helo: 0.06, mail: 0.07, rcpt: 0.08, data: 0.09 };
  let survivedCalls = 0;
  const h = await serve(t, {
    profile: profile('walk', delays),
    observer: {
      onSurvived: () => {
        survivedCalls++;
        return { code: 451, enhanced: '4.7.1', text: 'Come back later' };
      },
    },
  });
  const connectStart = performance.now();
  const c = await open(h.port);
  const timed = async (line: string | undefined): Promise<[number, number]> => {
    const start = line === undefined ? connectStart : performance.now();
    const r = line === undefined ? await c.read() : await c.command(line);
    return [r.code, performance.now() - start];
  };
  const steps: Array<[string | undefined, number, number]> = [
    [undefined, 220, delays.banner],
    ['EHLO client.example', 250, delays.helo],
    ['MAIL FROM:<sender@example.org>', 250, delays.mail],
    ['RCPT TO:<one@example.net>', 250, delays.rcpt],
    ['RCPT TO:<two@example.net>', 250, delays.rcpt],
  ];
  for (const [line, code, delay] of steps) {
    const [got, ms] = await timed(line);
    assert.equal(got, code, `${line ?? 'banner'}`);
    assert.ok(ms >= delay * 1000, `${line ?? 'banner'} answered after ${ms.toFixed(1)} ms, before ${delay * 1000} ms`);
  }
  const start = performance.now();
  const data = await c.command('DATA');
  assert.equal(performance.now() - start >= delays.data * 1000, true);
  assert.equal(data.code, 451);
  assert.equal(data.enhanced, '4.7.1');
  assert.equal(data.text, 'Come back later');
  assert.equal((await c.command('QUIT')).code, 221);
  await c.waitClosed();
  const s = await h.summary();
  assert.equal(survivedCalls, 1);
  assert.equal(s.outcome, 'survived');
  assert.equal(s.stage, 'data');
  assert.equal(s.hangup, undefined);
  assert.equal(s.profile, 'walk');
  assert.equal(s.helo, 'client.example');
  assert.equal(s.mailFrom, 'sender@example.org');
  assert.deepEqual(s.rcpts, ['one@example.net', 'two@example.net']);
  assert.equal(s.rcptCount, 2);
  assert.equal(s.commands, 6, 'QUIT after the end is a command line too');
  assert.equal(s.errors, 0);
  assert.deepEqual(s.events, { pregreet: 0, pipelining: 0, bareLf: 0, nonSmtp: 0 }, 'an RFC-abiding client shows nothing');
  assert.ok(s.held.connect! >= 0.05 && s.held.helo! >= 0.06 && s.held.mail! >= 0.07 && s.held.rcpt! >= 0.16 && s.held.data! >= 0.09, JSON.stringify(s.held));
  assert.ok(s.heldSeconds >= 0.43, `held ${s.heldSeconds}`);
  assert.ok(s.seconds >= s.heldSeconds);
  assert.equal(h.timers.size, 0, 'nothing left in the timer queue');
  assert.equal(h.serverSockets[0]!.destroyed, true);
});

test('without an onSurvived answer the profile’s end decides: allowlist → 451 4.7.1, a reply → that reply', async (t) => {
  const h1 = await serve(t);
  const c1 = await open(h1.port);
  await c1.read();
  await c1.command('HELO a.example');
  await c1.command('MAIL FROM:<>');
  await c1.command('RCPT TO:<x@example.net>');
  const r1 = await c1.command('DATA');
  assert.equal(r1.code, 451);
  assert.equal(r1.enhanced, '4.7.1');

  const h2 = await serve(t, { profile: profile('refuse', {}, { kind: 'reply', code: 554, text: '5.7.1 Go away' }) });
  const c2 = await open(h2.port);
  await c2.read();
  await c2.command('HELO a.example');
  await c2.command('MAIL FROM:<>');
  await c2.command('RCPT TO:<x@example.net>');
  const r2 = await c2.command('DATA');
  assert.equal(r2.code, 554);
  assert.equal(r2.enhanced, '5.7.1');
  assert.equal(r2.text, 'Go away');
  assert.equal((await c2.command('QUIT')).code, 221, 'a 554 end leaves the client to QUIT too');
  await c2.waitClosed();
});

test('pregreet: bytes before the banner are reported once, and the commands are still answered after the banner', async (t) => {
  const h = await serve(t, { profile: profile('greet-wait', { banner: 0.2 }) });
  const raw = await Raw.connect(h.port);
  raw.write('EHLO early.example\r\n');
  await new Promise((r) => setTimeout(r, 40));
  raw.write('NOOP\r\n');
  await raw.waitFor(/^220 mx\.test ESMTP\r\n250-mx\.test[\s\S]*\r\n250 [^\r]*\r\n250 2\.0\.0 Ok\r\n$/);
  raw.write('QUIT\r\n');
  await raw.waitClosed();
  const s = await h.summary();
  assert.deepEqual(
    h.events.map((e) => [e.kind, e.stage]),
    [['pregreet', 'connect']],
  );
  assert.equal(s.events.pregreet, 1);
  assert.equal(s.events.pipelining, 0);
});

test('pregreet with a drop decision: 421 at once, before the banner delay', async (t) => {
  const h = await serve(t, {
    // A banner delay far above the bound below, so "at once" holds on a loaded machine and still means it.
    profile: profile('greet-wait', { banner: 60 }),
    observer: { onEvent: (e) => (e.kind === 'pregreet' ? 'drop' : 'continue') },
  });
  const raw = await Raw.connect(h.port);
  const start = performance.now();
  raw.write('HELO early\r\n');
  await raw.waitClosed();
  assert.ok(performance.now() - start < 15_000);
  assert.match(raw.text, /^421 4\.7\.0 mx\.test /);
  assert.doesNotMatch(raw.text, /220/);
  const s = await h.summary();
  assert.equal(s.outcome, 'dropped');
  assert.equal(s.stage, 'connect');
  assert.equal(h.timers.size, 0);
});

test('pregreet with a reply-and-close decision: that reply replaces the banner when the wait ends', async (t) => {
  const h = await serve(t, {
    profile: profile('greet-wait', { banner: 0.15 }),
    observer: { onEvent: () => ({ reply: { code: 554, enhanced: '5.7.1', text: 'Talk after the greeting' }, close: true }) },
  });
  const start = performance.now();
  const raw = await Raw.connect(h.port);
  raw.write('EHLO early\r\n');
  await raw.waitClosed();
  assert.ok(performance.now() - start >= 150, 'still held for the banner delay');
  assert.equal(raw.text, '554 5.7.1 Talk after the greeting\r\n');
  assert.equal((await h.summary()).outcome, 'dropped');
});

test('bytes the caller already read (preread) count as a pregreet and are processed as commands', async (t) => {
  const h = await serve(t, { preread: Buffer.from('HELO pre.example\r\n') });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 mx\.test ESMTP\r\n250 mx\.test\r\n$/);
  raw.write('QUIT\r\n');
  await raw.waitClosed();
  const s = await h.summary();
  assert.equal(s.events.pregreet, 1);
  assert.equal(s.helo, 'pre.example');
});

test('pipelining: MAIL and RCPT sent together while MAIL’s reply is held is reported once, both are answered in order', async (t) => {
  const h = await serve(t, { profile: profile('p', { mail: 0.1, rcpt: 0.1 }) });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('EHLO c.example\r\n');
  await raw.waitFor(/\r\n250 [^\r]*\r\n$/);
  const start = performance.now();
  raw.write('MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.net>\r\n');
  await raw.waitFor(/250 2\.1\.0 Ok\r\n250 2\.1\.5 Ok\r\n$/);
  assert.ok(performance.now() - start >= 200, 'each reply waited its own delay');
  raw.write('QUIT\r\n');
  await raw.waitClosed();
  assert.deepEqual(
    h.events.map((e) => [e.kind, e.stage]),
    [['pipelining', 'mail']],
  );
  const s = await h.summary();
  assert.equal(s.events.pipelining, 1);
  assert.deepEqual(s.rcpts, ['b@example.net']);
});

test('a command sent before the banner is a pregreet, and not reported again as pipelining when it waits behind the EHLO reply', async (t) => {
  const h = await serve(t, { profile: profile('p', { banner: 0.1, helo: 0.1 }) });
  const raw = await Raw.connect(h.port);
  raw.write('EHLO early.example\r\nMAIL FROM:<a@example.org>\r\n');
  await raw.waitFor(/250 2\.1\.0 Ok\r\n$/);
  raw.write('RCPT TO:<b@example.net>\r\nNOOP\r\n');
  await raw.waitFor(/250 2\.0\.0 Ok\r\n$/);
  raw.socket.destroy();
  const s = await h.summary();
  assert.deepEqual([s.events.pregreet, s.events.pipelining], [1, 1]);
  assert.deepEqual(
    h.events.map((e) => [e.kind, e.stage]),
    [
      ['pregreet', 'connect'],
      ['pipelining', 'rcpt'],
    ],
    'the pregreet bytes once; the later RCPT+NOOP burst is new pipelining',
  );
});

test('pipelining is also seen when the replies are not delayed (both lines arrived before the first reply)', async (t) => {
  const h = await serve(t);
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('HELO c.example\r\nNOOP\r\n');
  await raw.waitFor(/250 2\.0\.0 Ok\r\n$/);
  raw.socket.destroy();
  const s = await h.summary();
  assert.equal(s.events.pipelining, 1);
  assert.equal(s.events.pregreet, 0);
});

test('bare LF line endings are reported once per session and the commands still work', async (t) => {
  const h = await serve(t);
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('HELO lf.example\n');
  await raw.waitFor(/250 mx\.test\r\n$/);
  raw.write('MAIL FROM:<a@example.org>\n');
  await raw.waitFor(/250 2\.1\.0 Ok\r\n$/);
  raw.write('QUIT\r\n');
  await raw.waitClosed();
  assert.deepEqual(
    h.events.map((e) => [e.kind, e.stage]),
    [['bareLf', 'helo']],
  );
  assert.equal((await h.summary()).events.bareLf, 1);
});

test('an HTTP request is a nonSmtp event; the observer’s drop answers 421 and closes', async (t) => {
  const h = await serve(t, { observer: { onEvent: (e) => (e.kind === 'nonSmtp' ? 'drop' : undefined) } });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n');
  await raw.waitClosed();
  assert.match(raw.text, /^220 mx\.test ESMTP\r\n421 4\.7\.0 mx\.test [^\r]*\r\n$/);
  const s = await h.summary();
  assert.equal(s.outcome, 'dropped');
  assert.equal(s.events.nonSmtp, 1);
  const ev = h.events.find((e) => e.kind === 'nonSmtp');
  assert.equal(ev?.line, 'GET / HTTP/1.1');
});

test('without a decision an HTTP request just gets 500s; only the first line is classified', async (t) => {
  const h = await serve(t);
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('GET / HTTP/1.1\r\nHost: mx.test\r\n\r\n');
  await raw.waitFor(/(500 5\.5\.2 [^\r]*\r\n){3}$/);
  raw.socket.destroy();
  const s = await h.summary();
  assert.equal(s.events.nonSmtp, 1);
  assert.equal(s.errors, 3);
});

test('an injected classify decides what is non-SMTP', async (t) => {
  const h = await serve(t, { classify: (line) => (line.startsWith('EHLO') ? 'nonSmtp' : 'smtp') });
  const c = await open(h.port);
  await c.read();
  assert.equal((await c.command('EHLO odd.example')).code, 250);
  await c.quit();
  assert.equal((await h.summary()).events.nonSmtp, 1);
});

test('the default classify is the protocol check’s: a mistyped verb is SMTP (a 500), binary and SSH are not', async (t) => {
  const h = await serve(t);
  const typo = await Raw.connect(h.port);
  await typo.waitFor(/^220 /);
  typo.write('EHOL c.example\r\n');
  await typo.waitFor(/500 5\.5\.2 [^\r]*\r\n$/);
  typo.socket.destroy();
  assert.equal((await h.summary(0)).events.nonSmtp, 0, 'an unknown verb is left to the 500');

  for (const [i, opener] of [[1, '\x16\x03\x01\x02\x00\x01'], [2, 'SSH-2.0-OpenSSH_9.6']] as const) {
    const raw = await Raw.connect(h.port);
    await raw.waitFor(/^220 /);
    raw.write(`${opener}\r\n`);
    await raw.waitFor(/500 5\.5\.2 [^\r]*\r\n$/);
    raw.socket.destroy();
    assert.equal((await h.summary(i)).events.nonSmtp, 1, JSON.stringify(opener));
  }
});

test('the observer rejects at RCPT: the client sees the 550, cannot reach DATA, and may QUIT', async (t) => {
  const seen: string[] = [];
  const h = await serve(t, {
    observer: {
      onCommand: (cmd) => {
        seen.push(`${cmd.stage}:${cmd.verb}:${typeof cmd.reply === 'string' ? cmd.reply : cmd.reply.code}`);
        if (cmd.verb === 'RCPT') return { reply: { code: 550, enhanced: '5.7.1', text: 'Client address is listed on a DNS blocklist' } };
        return 'continue';
      },
    },
  });
  const c = await open(h.port);
  await c.read();
  await c.command('EHLO c.example');
  await c.command('MAIL FROM:<a@example.org>');
  const rcpt = await c.command('RCPT TO:<b@example.net>');
  assert.equal(rcpt.code, 550);
  assert.equal(rcpt.text, 'Client address is listed on a DNS blocklist');
  const data = await c.command('DATA');
  assert.equal(data.code, 554, 'no accepted recipient, no end action');
  const quit = await c.command('QUIT');
  assert.equal(quit.code, 221);
  await c.waitClosed();
  const s = await h.summary();
  assert.equal(s.outcome, 'quit');
  assert.deepEqual(s.rcpts, ['b@example.net']);
  assert.equal(s.errors, 0, 'a policy reject is not a protocol error');
  assert.deepEqual(seen, ['helo:EHLO:250', 'mail:MAIL:250', 'rcpt:RCPT:250', 'rcpt:DATA:554', 'rcpt:QUIT:221']);
});

test('a decision with now:true skips the stage delay; with close:true the session ends after it', async (t) => {
  const h = await serve(t, {
    // Far above the bound below: "skipped" then holds on a loaded machine and still means it.
    profile: profile('slow-mail', { mail: 60 }),
    observer: {
      onCommand: (cmd) => (cmd.verb === 'MAIL' ? { reply: { code: 550, enhanced: '5.7.1', text: 'No' }, now: true, close: true } : undefined),
    },
  });
  const c = await open(h.port);
  await c.read();
  await c.command('HELO c.example');
  const start = performance.now();
  const r = await c.command('MAIL FROM:<a@example.org>');
  assert.equal(r.code, 550);
  assert.ok(performance.now() - start < 15_000);
  await c.waitClosed();
  const s = await h.summary();
  assert.equal(s.outcome, 'dropped');
  assert.equal(s.mailFrom, 'a@example.org');
});

test('switching the profile mid-session takes effect at the next wait; the wait in progress keeps its deadline', async (t) => {
  // The slow helo is far above the bound below, so the old wait and the new one cannot be confused on a loaded machine.
  const slow = profile('slow', { helo: 60, mail: 0.3 });
  let ehloRead = false;
  const h = await serve(t, {
    profile: profile('fast', { helo: 0.1 }),
    observer: { onCommand: (cmd) => void (ehloRead ||= cmd.verb === 'EHLO') },
  });
  const c = await open(h.port);
  await c.read();
  const start = performance.now();
  c.write('EHLO c.example\r\n');
  // Switch once the EHLO is read (its wait is armed in the same tick), not after a fixed sleep that a
  // stalled machine could end before the EHLO is read.
  await until(() => ehloRead, undefined, 'the EHLO read');
  h.sessions[0]!.setProfile(slow);
  const ehlo = await c.read();
  const ehloMs = performance.now() - start;
  assert.equal(ehlo.code, 250);
  assert.ok(ehloMs >= 100 && ehloMs < 15_000, `EHLO answered after ${ehloMs.toFixed(1)} ms: the old 0.1 s wait`);
  const mailStart = performance.now();
  const mail = await c.command('MAIL FROM:<a@example.org>');
  const mailMs = performance.now() - mailStart;
  assert.equal(mail.code, 250);
  assert.ok(mailMs >= 300, `MAIL answered after ${mailMs.toFixed(1)} ms: the new profile's 0.3 s`);
  await c.quit();
  assert.equal((await h.summary()).profile, 'slow');
});

test('escalation from the observer: setProfile inside onCommand applies to that command’s own wait', async (t) => {
  const slow = profile('slow', { helo: 0.25 });
  const h = await serve(t, {
    observer: {
      onCommand: (cmd, session) => {
        if (cmd.verb === 'EHLO' && cmd.arg === 'bad.example') session.setProfile(slow);
        return undefined;
      },
    },
  });
  const c = await open(h.port);
  await c.read();
  const start = performance.now();
  await c.command('EHLO bad.example');
  assert.ok(performance.now() - start >= 250);
  await c.quit();
});

test('a client hanging up during a wait: onClose names the stage, the socket is destroyed and its timer entry is gone', async (t) => {
  const h = await serve(t, { profile: profile('long', { helo: 30 }) });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('EHLO c.example\r\n');
  await until(() => h.timers.size === 1 && h.sessions[0]!.stage === 'helo');
  assert.ok(h.timers.nextDeadline! - performance.now() > 20_000, 'the EHLO reply is held for 30 s');
  await new Promise((r) => setTimeout(r, 30));
  raw.socket.destroy();
  const s = await h.summary();
  assert.equal(s.outcome, 'hangup');
  assert.equal(s.hangup, 'helo');
  assert.equal(s.stage, 'helo');
  assert.ok(s.held.helo! > 0 && s.held.helo! < 5, `held ${s.held.helo}`);
  assert.equal(s.helo, 'c.example');
  assert.equal(h.timers.size, 0, 'timer entry cancelled');
  assert.equal(h.timers.armedDeadline, undefined);
  assert.equal(h.serverSockets[0]!.destroyed, true);
  assert.equal(h.sessions[0]!.closed, true);
});

test('a client hanging up before the banner is a hang-up in connect', async (t) => {
  const h = await serve(t, { profile: profile('long', { banner: 30 }) });
  const raw = await Raw.connect(h.port);
  await until(() => h.timers.size === 1);
  raw.socket.end();
  const s = await h.summary();
  assert.equal(s.outcome, 'hangup');
  assert.equal(s.hangup, 'connect');
  assert.equal(h.timers.size, 0);
});

test('commands out of order get 503, bad syntax 501, unknown ones 500 or 502', async (t) => {
  const h = await serve(t);
  const c = await open(h.port);
  await c.read();
  assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 503);
  assert.equal((await c.command('RCPT TO:<b@example.net>')).code, 503);
  assert.equal((await c.command('DATA')).code, 503);
  assert.equal((await c.command('EHLO')).code, 501);
  assert.equal((await c.command('XYZZY')).code, 500);
  assert.equal((await c.command('STARTTLS')).code, 502);
  assert.equal((await c.command('HELO c.example')).code, 250);
  assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 250);
  assert.equal((await c.command('MAIL FROM:<a@example.org>')).code, 503, 'nested MAIL');
  assert.equal((await c.command('RCPT TO:<>')).code, 501);
  assert.equal((await c.command('RSET')).code, 250);
  assert.equal((await c.command('RCPT TO:<b@example.net>')).code, 503, 'RSET ended the transaction');
  await c.quit();
  const s = await h.summary();
  assert.equal(s.errors, 9);
  assert.equal(s.stage, 'rcpt', 'furthest stage reached; QUIT does not count');
});

test('NOOP, RSET, HELP and VRFY are answered at once, whatever the stage delays', async (t) => {
  // Far above the bound below: a loaded machine cannot make "at once" look like a wait.
  const h = await serve(t, { profile: profile('slow', { mail: 60, rcpt: 60, data: 60 }) });
  const c = await open(h.port);
  await c.read();
  await c.command('HELO c.example');
  const start = performance.now();
  assert.equal((await c.command('NOOP')).code, 250);
  assert.equal((await c.command('RSET')).code, 250);
  assert.equal((await c.command('HELP')).code, 214);
  assert.equal((await c.command('VRFY root')).code, 252);
  assert.ok(performance.now() - start < 15_000, 'none waited the 60 s stage delays');
  await c.quit();
});

test('more than maxErrors protocol errors: 421 and close', async (t) => {
  const h = await serve(t, { limits: { maxErrors: 3 } });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('ONE\r\nTWO\r\nTHREE\r\nFOUR\r\nFIVE\r\n');
  await raw.waitClosed();
  assert.match(raw.text, /^220 [^\r]*\r\n(500 [^\r]*\r\n){3}421 4\.7\.0 mx\.test Error: too many errors\r\n$/);
  const s = await h.summary();
  assert.equal(s.outcome, 'errors');
  assert.equal(s.errors, 4);
});

test('a client silent on its turn past the idle timeout gets 421 and is closed', async (t) => {
  const h = await serve(t, { limits: { idleTimeout: 0.1 } });
  const start = performance.now();
  const raw = await Raw.connect(h.port);
  await raw.waitClosed();
  assert.ok(performance.now() - start >= 100);
  assert.match(raw.text, /^220 mx\.test ESMTP\r\n421 4\.4\.2 mx\.test Error: timeout exceeded\r\n$/);
  const s = await h.summary();
  assert.equal(s.outcome, 'idle');
  assert.equal(s.hangup, undefined);
  assert.equal(h.timers.size, 0);
});

test('1 MB line without a newline: 500, then 421 at the byte cap and close; reading stops near the cap', async (t) => {
  const h = await serve(t, { limits: { maxLineLength: 4096, maxBytes: 64 * 1024 } });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write(Buffer.alloc(1024 * 1024, 0x41));
  await raw.waitClosed();
  const s = await h.summary();
  assert.equal(s.outcome, 'abuse');
  assert.equal(s.errors, 1, 'the too-long line');
  assert.ok(s.bytesRead <= 64 * 1024 + 64 * 1024, `read ${s.bytesRead} bytes`);
  assert.equal(h.serverSockets[0]!.destroyed, true);
});

test('a too-long line is answered 500 and skipped; the next line is a command again', async (t) => {
  const h = await serve(t, { limits: { maxLineLength: 512 } });
  const raw = await Raw.connect(h.port);
  await raw.waitFor(/^220 /);
  raw.write('NOOP ' + 'x'.repeat(2000));
  await raw.waitFor(/500 5\.5\.2 Error: line too long\r\n$/);
  raw.write('x'.repeat(2000) + '\r\nQUIT\r\n');
  await raw.waitClosed();
  assert.match(raw.text, /500 5\.5\.2 Error: line too long\r\n221 2\.0\.0 Bye\r\n$/);
  assert.equal((await h.summary()).outcome, 'quit');
});

test('RCPT beyond maxRecipients gets 452 and the summary list stays bounded', async (t) => {
  const h = await serve(t, { limits: { maxRecipients: 3 } });
  const c = await open(h.port);
  await c.read();
  await c.command('HELO c.example');
  await c.command('MAIL FROM:<a@example.org>');
  const codes: number[] = [];
  for (let i = 0; i < 5; i++) codes.push((await c.command(`RCPT TO:<r${i}@example.net>`)).code);
  assert.deepEqual(codes, [250, 250, 250, 452, 452]);
  await c.quit();
  const s = await h.summary();
  assert.equal(s.rcpts.length, 3);
  assert.equal(s.rcptCount, 5);
});

test('an observer that throws: the client gets 451 4.3.0, onError hears of it, the session ends as error', async (t) => {
  const errors: unknown[] = [];
  const h = await serve(t, {
    observer: {
      onError: (err) => errors.push(err),
      onCommand: (cmd) => {
        if (cmd.verb === 'MAIL') throw new Error('policy bug');
        return undefined;
      },
    },
  });
  const c = await open(h.port);
  await c.read();
  await c.command('HELO c.example');
  const r = await c.command('MAIL FROM:<a@example.org>');
  assert.equal(r.code, 451);
  assert.equal(r.enhanced, '4.3.0');
  await c.waitClosed();
  assert.equal((await h.summary()).outcome, 'error');
  assert.equal(errors.length, 1);
});

test('an observer reply of 354 is refused: the hold never takes a body', async (t) => {
  const h = await serve(t, { observer: { onCommand: (cmd) => (cmd.verb === 'DATA' ? { reply: { code: 354, text: 'go ahead' } } : undefined) } });
  const c = await open(h.port);
  await c.read();
  await c.command('HELO c.example');
  await c.command('MAIL FROM:<a@example.org>');
  await c.command('RCPT TO:<b@example.net>');
  const r = await c.command('DATA');
  assert.equal(r.code, 451);
  await c.waitClosed();
  assert.equal((await h.summary()).outcome, 'error');
});

test('session.close() from outside writes the reply at once, even mid-wait, and cancels the timer', async (t) => {
  const h = await serve(t, { profile: profile('long', { banner: 30 }) });
  const raw = await Raw.connect(h.port);
  await until(() => h.timers.size === 1);
  h.sessions[0]!.close({ code: 421, enhanced: '4.3.2', text: 'Service shutting down' });
  await raw.waitClosed();
  assert.equal(raw.text, '421 4.3.2 Service shutting down\r\n');
  const s = await h.summary();
  assert.equal(s.outcome, 'closed');
  assert.equal(h.timers.size, 0);
});

test('onClose is called exactly once per session', async (t) => {
  let calls = 0;
  const h = await serve(t, { observer: { onClose: () => calls++ } });
  const c = await open(h.port);
  await c.read();
  c.write('QUIT\r\n');
  c.destroy();
  await h.summary();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(calls, 1);
});
