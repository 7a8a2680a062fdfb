/**
 * Per-stage timing (issue 4 item 2): a held session that hangs up while its
 * MAIL reply is held, and a relayed session, each through the real proxy on
 * loopback; both show per-stage client/held/backend seconds in their session
 * log line (`stages`) and in the stage metrics. Metrics live in one
 * process-wide registry, so every assertion compares two scrapes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import type { Vetted } from '../../src/smtp/front.js';
import { RelaySession, watchHangup } from '../../src/smtp/session.js';
import { policyDir } from '../helpers/policy-dir.js';
import { delta, scrape } from '../helpers/scrape.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { sessionOf, withProxy } from '../helpers/with-proxy.js';

type StageTimes = Record<string, { client: number; held: number; backend: number }>;

/**
 * Slack on top of a delay before a held time counts as wrong. A loaded machine
 * fires timers late and so stretches every hold; the bounds only need to catch
 * time charged to the wrong stage, and each delay they tell apart is far larger.
 */
const STALL = 5;

test('a held client that hangs up while its MAIL reply is held: hangups_total{stage="mail"} +1, held_seconds observed, and the log line says so with stage times', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    block: ['127.0.7.0/24'],
    // MAIL's wait is far longer than anything the test sees, so "until the hang-up, not the whole wait" is clear on any machine.
    policy: { profiles: { tarpit: { delays: { banner: 0.2, helo: 0.1, mail: 60, rcpt: 0.1, data: 0.1 }, end: { reply: 554, text: '5.7.1 Held and refused' } } } },
  });
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    const before = await scrape(p.metricsPort);
    const client = await SmtpClient.connect({ port: p.port, localAddress: '127.0.7.1', timeout: 15_000 });
    assert.equal((await client.read()).code, 220);
    assert.equal((await client.command('EHLO bot.example')).code, 250);
    client.write('MAIL FROM:<bot@example.org>\r\n');
    // Give up 0.3 s into the 60 s MAIL wait, as an impatient bot does.
    await new Promise((r) => setTimeout(r, 300));
    client.destroy();

    const line = await sessionOf(p, '127.0.7.1');
    assert.equal(line.verdict, 'tarpit');
    assert.equal(line.path, 'hold');
    assert.equal(line.outcome, 'hangup');
    assert.equal(line.hangup, 'mail');
    const stages = line.stages as StageTimes;
    assert.ok(stages.connect && stages.helo && stages.mail, `stages connect, helo, mail in ${JSON.stringify(stages)}`);
    assert.ok(stages.connect.held >= 0.18 && stages.connect.held < 0.2 + STALL, `banner held 0.2 s: ${stages.connect.held}`);
    assert.ok(stages.helo.held >= 0.08 && stages.helo.held < 0.1 + STALL, `EHLO held 0.1 s: ${stages.helo.held}`);
    assert.ok(stages.mail.held >= 0.25 && stages.mail.held < 0.3 + STALL, `MAIL held until the hang-up (0.3 s), not the whole 60 s: ${stages.mail.held}`);
    assert.equal(stages.mail.backend, 0, 'a held session never talks to the backend');
    assert.equal(stages.rcpt, undefined, 'never reached RCPT');
    assert.equal(backend.messages.length, 0);

    const after = await scrape(p.metricsPort);
    assert.equal(delta(before, after, 'smtp_tarpit_hangups_total', { stage: 'mail', verdict: 'tarpit' }), 1);
    assert.equal(delta(before, after, 'smtp_tarpit_hangups_total', { stage: 'helo', verdict: 'tarpit' }), 0);
    assert.equal(delta(before, after, 'smtp_tarpit_held_seconds_count', { verdict: 'tarpit' }), 1);
    const held = delta(before, after, 'smtp_tarpit_held_seconds_sum', { verdict: 'tarpit' });
    assert.ok(held >= 0.55 && held < 0.6 + STALL, `held 0.2 + 0.1 + ~0.3 s in all: ${held}`);
    assert.equal(delta(before, after, 'smtp_tarpit_stage_duration_seconds_count', { stage: 'mail', verdict: 'tarpit' }), 1);
    // 0.2 s of banner hold is above the 0.1 s bucket (which bucket above depends on how late a busy machine fired it).
    assert.equal(delta(before, after, 'smtp_tarpit_stage_duration_seconds_bucket', { stage: 'connect', verdict: 'tarpit', le: '0.1' }), 0);
    assert.equal(delta(before, after, 'smtp_tarpit_stage_duration_seconds_bucket', { stage: 'connect', verdict: 'tarpit', le: '+Inf' }), 1);
  });
});

test('a relayed session logs client and backend seconds per stage and observes stage_duration_seconds for each stage it went through', async (t) => {
  // The final reply's delay is long enough that RCPT's and the body's backend waits, bounded below it, cannot reach it on a loaded machine.
  const backend = await startBackend({ dataDelayMs: 3000 });
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, metrics: true }, async (p) => {
    const before = await scrape(p.metricsPort);
    const client = await SmtpClient.open({ port: p.port, timeout: 15_000 });
    assert.equal((await client.command('EHLO mta.example')).code, 250);
    // The client's own pause after EHLO: connect-stage client time (smtp-server has no EHLO hook).
    await new Promise((r) => setTimeout(r, 150));
    assert.equal((await client.command('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.net>')).code, 250);
    assert.equal((await client.command('DATA')).code, 354);
    client.write(wireBody('Subject: timing\n\nhello\n'));
    const end = await client.command('.');
    assert.equal(end.code, 250);
    await client.quit();

    const line = await sessionOf(p, '127.0.0.1');
    assert.equal(line.verdict, 'pass');
    assert.equal(line.hangup, undefined, 'QUIT is no hang-up');
    const stages = line.stages as StageTimes;
    for (const stage of ['connect', 'mail', 'rcpt', 'data', 'body', 'relay']) {
      const s = stages[stage];
      assert.ok(s, `stage ${stage} in ${JSON.stringify(stages)}`);
      assert.deepEqual(Object.keys(s).sort(), ['backend', 'client', 'held']);
      assert.equal(s.held, 0, `${stage}: a pass is never held`);
    }
    assert.ok(stages.connect!.client >= 0.14, `the client's 0.15 s pause: ${stages.connect!.client}`);
    // MAIL's wait includes the XCLIENT hand-over; on loopback RCPT's may round to 0.000.
    assert.ok(stages.mail!.backend > 0, `MAIL waited on the backend: ${JSON.stringify(stages)}`);
    assert.ok(stages.rcpt!.backend >= 0 && stages.rcpt!.backend < 2.5, `RCPT's backend wait: ${stages.rcpt!.backend}`);
    assert.ok(stages.relay!.backend >= 2.95 && stages.relay!.backend < 3 + STALL, `the backend's 3 s final reply: ${stages.relay!.backend}`);
    assert.ok(stages.body!.backend < 2.5, `the backend's delay is not charged to the body: ${stages.body!.backend}`);
    assert.equal(stages.quit, undefined);
    assert.equal(backend.messages.length, 1);

    const after = await scrape(p.metricsPort);
    for (const stage of ['connect', 'mail', 'rcpt', 'data', 'body', 'relay']) {
      assert.equal(delta(before, after, 'smtp_tarpit_stage_duration_seconds_count', { stage, verdict: 'pass' }), 1, stage);
    }
    const relay = delta(before, after, 'smtp_tarpit_stage_duration_seconds_sum', { stage: 'relay', verdict: 'pass' });
    assert.ok(relay >= 2.95, `relay stage took the backend's 3 s: ${relay}`);
    assert.equal(delta(before, after, 'smtp_tarpit_hangups_total', { verdict: 'pass' }), 0);
    assert.equal(delta(before, after, 'smtp_tarpit_held_seconds_count', { verdict: 'pass' }), 0);
  });
});

test('a relayed client that hangs up after RCPT, without QUIT: hangups_total{stage="rcpt",verdict="pass"} +1 and hangup in its log line', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, metrics: true }, async (p) => {
    const before = await scrape(p.metricsPort);
    const client = await SmtpClient.open({ port: p.port, timeout: 15_000 });
    assert.equal((await client.command('EHLO mta.example')).code, 250);
    assert.equal((await client.command('MAIL FROM:<a@example.org>')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@example.net>')).code, 250);
    client.socket.destroy();
    const line = await sessionOf(p, '127.0.0.1');
    assert.equal(line.hangup, 'rcpt', JSON.stringify(line));
    const after = await scrape(p.metricsPort);
    assert.equal(delta(before, after, 'smtp_tarpit_hangups_total', { stage: 'rcpt', verdict: 'pass' }), 1);
    assert.equal(backend.messages.length, 0);
  });
});

/** A relay session on a server-side socket watched by watchHangup, and the client socket. */
async function watchedPair(t: { after(fn: () => void): void }): Promise<{ server: Socket; client: Socket; rs: RelaySession }> {
  const listener = createServer();
  t.after(() => listener.close());
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const client = connect((listener.address() as AddressInfo).port, '127.0.0.1');
  client.on('error', () => undefined);
  // Both sides read (and discard), or neither would ever see the other's FIN.
  client.resume();
  const [server] = (await once(listener, 'connection')) as [Socket];
  server.on('error', () => undefined);
  server.resume();
  const vetted = { id: 'x', remoteAddress: '127.0.0.1', remotePort: client.localPort } as unknown as Vetted;
  watchHangup(vetted, server);
  return { server, client, rs: new RelaySession(vetted) };
}

/** events.once rejects on 'error' (a reset); only the close matters here. */
function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

test('watchHangup: our side ending first (221 after QUIT) is no hang-up; the client\'s FIN or reset first is', async (t) => {
  const quit = await watchedPair(t);
  quit.server.end('221 Bye\r\n');
  await closed(quit.server);
  assert.equal(quit.rs.hungUp, false);

  const fin = await watchedPair(t);
  fin.client.end();
  await closed(fin.server);
  assert.equal(fin.rs.hungUp, true);

  const reset = await watchedPair(t);
  reset.client.resetAndDestroy();
  await closed(reset.server);
  assert.equal(reset.rs.hungUp, true);
});
