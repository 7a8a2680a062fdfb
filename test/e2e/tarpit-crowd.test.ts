/**
 * A crowd in the tarpit (issue 4, Tests 1–2): bots that give up, talk before
 * the banner or pipeline blindly, held side by side by the real proxy on
 * loopback, get nothing to the backend, and the stage each one hung up in
 * shows in hangups_total and in its session log line; a real patient MTA
 * (swaks, long timeouts) sits a first-contact hold out, hears 451 4.7.1, and
 * its retry is relayed at once, while a bot doing the same with less patience
 * gets nothing through. Delays are STAGE seconds a stage and every bot's
 * patience ends half a stage away from any reply, so a loaded machine that
 * fires timers a second late changes nothing; metrics live in one
 * process-wide registry, so assertions compare scrapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { runBot, type BotResult } from '../helpers/bot.js';
import { policyDir, type TestPolicy } from '../helpers/policy-dir.js';
import { canRunPostfix, startPostfix } from '../helpers/postfix.js';
import { requireTool } from '../helpers/require-tool.js';
import { delta, scrape } from '../helpers/scrape.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { heldSeconds, reasons, sessionOf, withProxy } from '../helpers/with-proxy.js';

type StageTimes = Record<string, { client: number; held: number; backend: number }>;

const STAGES = ['connect', 'helo', 'mail', 'rcpt', 'data', 'body', 'relay', 'quit'];
const HANGUPS = 'smtp_tarpit_hangups_total';
/** Seconds a stage is held: a bot's patience ends half of it (2 s) away from any reply. */
const STAGE = 4;
/** Timer and scheduling slack on a busy 2-core machine, in seconds: well under half a stage. */
const SLACK = 1;

function near(actual: number | undefined, expected: number, what: string, slack = SLACK): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= slack, `${what}: ${actual} s, expected ${expected} ± ${slack}`);
}

/** Asserts the held seconds per stage, given in stages: the stages listed, and no others. */
function assertHeld(line: Record<string, unknown>, expected: Record<string, number>): void {
  const stages = line.stages as StageTimes;
  const who = String(line.client);
  for (const stage of STAGES) {
    if (expected[stage] === undefined) assert.ok(stages[stage] === undefined || stages[stage].held === 0, `${who} never held in ${stage}: ${JSON.stringify(stages)}`);
    else near(stages[stage]?.held, expected[stage] * STAGE, `${who} held in ${stage}`);
    if (stages[stage]) assert.equal(stages[stage].backend, 0, `${who}: a held session never talks to the backend`);
  }
  const total = Object.values(expected).reduce((a, b) => a + b, 0) * STAGE;
  near(line.held as number, total, `${who} held in all`);
}

function events(line: Record<string, unknown>): Record<string, number> {
  return (line.events as Record<string, number> | undefined) ?? {};
}

test('a crowd of bots in the tarpit: none reaches the backend; hangups_total and each log line name the stage it gave up in, with held times to match', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    block: ['127.0.9.0/24'],
    policy: {
      // Pregreet and pipelining add evidence but keep the verdict `tarpit`, so every hang-up is counted under one verdict.
      verdicts: { tarpit: 3, reject: 20, drop: 30 },
      profiles: { tarpit: { delays: { banner: STAGE, helo: STAGE, mail: STAGE, rcpt: STAGE, data: STAGE }, end: { reply: 451, text: '4.7.1 Try again later' } } },
    },
  });
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    const before = await scrape(p.metricsPort);
    const [a, b, c, d] = await Promise.all([
      runBot({ port: p.port, localAddress: '127.0.9.1', style: 'polite', patienceMs: 0.5 * STAGE * 1000 }),
      runBot({ port: p.port, localAddress: '127.0.9.2', style: 'pregreet', patienceMs: 1.5 * STAGE * 1000 }),
      runBot({ port: p.port, localAddress: '127.0.9.3', style: 'pipeline', patienceMs: 3.5 * STAGE * 1000 }),
      runBot({ port: p.port, localAddress: '127.0.9.4', style: 'polite', patienceMs: 2.5 * STAGE * 1000 }),
    ]);
    const gaveUp = (r: BotResult) => r.gaveUp;
    assert.ok([a, b, c, d].every(gaveUp), `every bot gave up rather than being closed: ${JSON.stringify([a, b, c, d])}`);
    assert.deepEqual(a.codes, [], 'a: no banner within half a stage');
    assert.deepEqual(b.codes, [220], 'b: the banner, then EHLO held past its patience');
    assert.deepEqual(c.codes, [220, 250, 250], 'c: banner, EHLO, MAIL; RCPT held past its patience');
    assert.deepEqual(d.codes, [220, 250], 'd: banner, EHLO; MAIL held past its patience');

    const [la, lb, lc, ld] = [await sessionOf(p, '127.0.9.1'), await sessionOf(p, '127.0.9.2'), await sessionOf(p, '127.0.9.3'), await sessionOf(p, '127.0.9.4')];
    for (const [line, stage] of [
      [la, 'connect'],
      [lb, 'helo'],
      [lc, 'rcpt'],
      [ld, 'mail'],
    ] as const) {
      assert.equal(line.verdict, 'tarpit', JSON.stringify(line));
      assert.equal(line.path, 'hold');
      assert.equal(line.outcome, 'hangup');
      assert.equal(line.hangup, stage, `${String(line.client)} hung up in ${stage}: ${JSON.stringify(line)}`);
    }
    assertHeld(la, { connect: 0.5 });
    assertHeld(lb, { connect: 1, helo: 0.5 });
    assertHeld(lc, { connect: 1, helo: 1, mail: 1, rcpt: 0.5 });
    assertHeld(ld, { connect: 1, helo: 1, mail: 0.5 });

    assert.ok(reasons(lb).some((r) => r.startsWith('pregreet +8: sent') && r.endsWith('bytes before the banner')), JSON.stringify(lb.reasons));
    assert.equal(events(lb).pregreet, 1, JSON.stringify(lb.events));
    assert.ok(reasons(lc).some((r) => r.startsWith('protocol.pipelining +5')), JSON.stringify(lc.reasons));
    assert.ok((events(lc).pipelining ?? 0) >= 1, JSON.stringify(lc.events));
    assert.equal(events(lc).pregreet ?? 0, 0, 'c waited for the banner');
    for (const line of [la, ld]) {
      assert.deepEqual(
        reasons(line).map((r) => r.split(' ')[0]),
        ['block'],
        `${String(line.client)} behaved: only the block list speaks against it`,
      );
      assert.equal((events(line).pregreet ?? 0) + (events(line).pipelining ?? 0), 0);
    }

    assert.equal(backend.messages.length, 0);
    assert.equal(backend.connections.size, 0, 'no XCLIENT for any bot: none was handed to the relay');

    const after = await scrape(p.metricsPort);
    const hangups = Object.fromEntries(STAGES.map((stage) => [stage, delta(before, after, HANGUPS, { stage, verdict: 'tarpit' })]));
    assert.deepEqual(hangups, { connect: 1, helo: 1, mail: 1, rcpt: 1, data: 0, body: 0, relay: 0, quit: 0 });
    assert.equal(delta(before, after, HANGUPS, {}), 4, 'no hang-up counted under another verdict');
    assert.equal(delta(before, after, 'smtp_tarpit_held_seconds_count', { verdict: 'tarpit' }), 4);
    near(delta(before, after, 'smtp_tarpit_held_seconds_sum', { verdict: 'tarpit' }), (0.5 + 1.5 + 3.5 + 2.5) * STAGE, 'held_seconds_sum, all four', 4 * SLACK);
  });
});

/** A first-contact hold of `stage` seconds a stage, ending in 451 4.7.1 and a place in the allowlist cache. */
function firstContact(stage: number): TestPolicy {
  return {
    policy: {
      firstContact: { enabled: true, profile: 'first-contact' },
      profiles: { 'first-contact': { delays: { banner: stage, helo: stage, mail: stage, rcpt: stage, data: stage }, end: 'allowlist' } },
    },
  };
}

interface Run {
  readonly code: number;
  readonly output: string;
  readonly seconds: number;
}

/** swaks as a patient MTA: waits up to 60 s for every reply (RFC 5321 §4.5.3.2 asks for minutes). */
function swaks(port: number, localAddress: string): Promise<Run> {
  const args = ['--server', '127.0.0.1', '--port', String(port), '--local-interface', localAddress, '--timeout', '60'];
  args.push('--helo', 'mta.example.org', '--from', 'patient@example.org', '--to', 'rcpt@example.net', '--header', 'Subject: patient', '--body', 'sat it out');
  const started = performance.now();
  return new Promise((resolve) => {
    execFile('swaks', args, { timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, output: stdout + stderr, seconds: (performance.now() - started) / 1000 });
    });
  });
}

test('a patient MTA (swaks) sits a first-contact hold out, hears 451 4.7.1 and its retry is relayed at once; a bot with 2.5 stages of patience gets nothing through', async (t) => {
  if (!requireTool(t, 'swaks')) return;
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, firstContact(STAGE));
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    const before = await scrape(p.metricsPort);
    const [first, bot] = await Promise.all([swaks(p.port, '127.0.21.1'), runBot({ port: p.port, localAddress: '127.0.21.2', style: 'polite', patienceMs: 2.5 * STAGE * 1000 })]);

    assert.match(first.output, /<\*\* +451 4\.7\.1/, first.output);
    // The 451 leaves the connection open (RFC 5321 §3.8): swaks's QUIT gets its 221, and the session ends cleanly.
    assert.match(first.output, /<\*\* +451 4\.7\.1[^\n]*\n +-> QUIT\n<- +221 2\.0\.0 Bye/, first.output);
    assert.doesNotMatch(first.output, /Remote host closed connection unexpectedly/, first.output);
    assert.notEqual(first.code, 0, 'swaks reports the temporary failure');
    assert.ok(first.seconds >= 5 * STAGE - SLACK && first.seconds < 5 * STAGE + 60, `swaks sat the 5-stage hold out: ${first.seconds} s`);
    const held = await sessionOf(p, '127.0.21.1');
    assert.equal(held.firstContact, true, JSON.stringify(held));
    assert.equal(held.path, 'hold');
    assert.equal(held.outcome, 'survived', JSON.stringify(held));
    assert.equal(held.hangup, undefined, 'leaving after its answer is no hang-up');
    assert.equal(backend.messages.length, 0, 'nothing relayed from the hold');

    const retry = await swaks(p.port, '127.0.21.1');
    assert.equal(retry.code, 0, retry.output);
    assert.match(retry.output, /<- +250 /, retry.output);
    assert.equal(backend.messages.length, 1);
    const [message] = backend.messages;
    assert.equal(message!.clientAddress, '127.0.21.1', 'XCLIENT carried the MTA\'s own address');
    assert.equal(message!.from, 'patient@example.org');
    assert.deepEqual(message!.to, ['rcpt@example.net']);
    assert.match(message!.body.toString('latin1'), /Subject: patient/);
    const relayed = await sessionOf(p, '127.0.21.1', 2);
    assert.ok(reasons(relayed).some((r) => r.startsWith('allowlist-cache')), JSON.stringify(relayed.reasons));
    // From the log, not swaks's run time, which a loaded machine stretches by seconds.
    assert.equal(heldSeconds(relayed), 0, `the retry met no wait: ${JSON.stringify(relayed)}`);

    // The bot behaved just like swaks but gave up 2.5 stages in, while MAIL was held.
    assert.ok(bot.gaveUp, JSON.stringify(bot));
    assert.deepEqual(bot.codes, [220, 250]);
    const botLine = await sessionOf(p, '127.0.21.2');
    assert.equal(botLine.outcome, 'hangup', JSON.stringify(botLine));
    assert.equal(botLine.hangup, 'mail');
    assertHeld(botLine, { connect: 1, helo: 1, mail: 0.5 });
    const after = await scrape(p.metricsPort);
    assert.equal(delta(before, after, HANGUPS, { stage: 'mail', verdict: String(botLine.verdict) }), 1);
    assert.equal(delta(before, after, HANGUPS, {}), 1, 'swaks never hung up');

    // Giving up earns no place in the allowlist cache: the bot's next try is held again.
    const again = await SmtpClient.connect({ port: p.port, localAddress: '127.0.21.2', timeout: 15_000 + STAGE * 1000 });
    const started = performance.now();
    assert.equal((await again.read()).code, 220);
    const bannerSeconds = (performance.now() - started) / 1000;
    again.destroy();
    assert.ok(bannerSeconds >= STAGE - 0.1, `banner held again: ${bannerSeconds} s`);
    assert.equal(backend.messages.length, 1, 'only the patient MTA\'s message');
  });
});

test('a real patient MTA (a second Postfix\'s smtp client, relaying to the proxy) is held on first contact, deferred with 451 4.7.1, and delivered by its own retry', async (t) => {
  if (!canRunPostfix(t)) return;
  const backend = await startBackend();
  t.after(() => backend.close());
  // 1 s stages: nothing here races a patience, and a survivor's held times only have lower bounds.
  const policies = policyDir(t, firstContact(1));
  await withProxy({ backendPort: backend.port, config: { policies } }, async (p) => {
    // Every foreign domain goes to the proxy, from 127.0.22.1; the helper's 1–2 s backoff makes the retry quick.
    // debug_peer_list logs the smtp client's conversation with the proxy (127.0.0.1), to see how the held session ends.
    const sender = await startPostfix({
      extraMain: { relayhost: `[127.0.0.1]:${p.port}`, default_transport: 'smtp', relay_transport: 'smtp', smtp_bind_address: '127.0.22.1', debug_peer_list: '127.0.0.1' },
    });
    try {
      const submit = await SmtpClient.open({ port: sender.port, timeout: 5000 });
      assert.equal((await submit.command('EHLO submitter.example')).code, 250);
      const sent = await submit.send('patient@local.test', ['rcpt@example.net'], wireBody('Subject: from postfix\n\nsat it out\n'));
      assert.equal(sent.end?.code, 250, JSON.stringify(sent));
      await submit.quit();

      const deferred = await sender.waitForLog(/status=deferred .*451 4\.7\.1/, 60_000);
      assert.match(deferred, /rcpt@example\.net/);
      assert.match(deferred, /\(in reply to DATA command\)/);
      assert.doesNotMatch(deferred, /lost connection/);
      const held = await sessionOf(p, '127.0.22.1');
      assert.equal(held.outcome, 'survived', JSON.stringify(held));
      assert.equal(held.firstContact, true);
      // A held reply never goes early, but a loaded machine sends it late: lower bounds only.
      const stages = held.stages as StageTimes;
      for (const stage of ['connect', 'helo', 'mail', 'rcpt', 'data']) assert.ok((stages[stage]?.held ?? 0) >= 0.99, `held 1 s in ${stage}: ${JSON.stringify(stages)}`);

      await sender.waitForLog(/status=sent /, 60_000);
      // After the 451 Postfix asks whether the connection is still good for more mail (RSET) and, having none, says
      // QUIT: the RSET is answered now, where the proxy used to close under it. Nothing in the log is a lost connection.
      const log = await sender.log();
      assert.doesNotMatch(log, /lost connection/i);
      const talk = log.split('\n').flatMap((l) => {
        const m = /\/smtp\[\d+\]: ([<>]) 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: (.*)$/.exec(l);
        return m ? [`${m[1]} ${m[2]}`] : [];
      });
      const end = talk.findIndex((l) => l.startsWith('< 451 4.7.1'));
      assert.ok(end >= 0, talk.join('\n'));
      const after = talk.slice(end + 1, end + 4);
      assert.ok(after[0] === '> QUIT' || (after[0] === '> RSET' && after[1] === '< 250 2.0.0 Ok' && after[2] === '> QUIT'), talk.join('\n'));
      assert.equal(backend.messages.length, 1);
      const [message] = backend.messages;
      assert.equal(message!.clientAddress, '127.0.22.1');
      assert.equal(message!.from, 'patient@local.test');
      assert.deepEqual(message!.to, ['rcpt@example.net']);
      assert.match(message!.body.toString('latin1'), /^Subject: from postfix$/m);
      const relayed = await sessionOf(p, '127.0.22.1', 2);
      assert.ok(reasons(relayed).some((r) => r.startsWith('allowlist-cache')), JSON.stringify(relayed.reasons));
      assert.equal(relayed.hangup, undefined, JSON.stringify(relayed));
    } finally {
      await sender.stop();
    }
  });
});
