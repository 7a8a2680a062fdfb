/**
 * A client that hangs up is an outcome, never an error (docs/design.md §4.6,
 * issue 12 item 3): smtp_tarpit_handler_errors_total and its alert mean our
 * code failed, so a FIN or a reset in the middle of a transaction must leave
 * the counter alone and show up as `hangup` with its stage in the session's
 * log line. The backend still loses its connection before the final dot, so
 * it discards the partial message (docs/design.md §4.1).
 *
 * The stage names are the log's own (src/core/stage.ts): after the 354 the
 * client is in `body`, so a hang-up mid-message is logged as `hangup: "body"`,
 * the same key as that stage's times under `stages` and the same label as
 * smtp_tarpit_hangups_total{stage="body"}.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { registry } from '../../src/metrics/registry.js';
import { FakeBackend } from '../helpers/fake-backend.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { withProxy, type RunningProxy } from '../helpers/with-proxy.js';

/** Every trapped error, whatever its stage. */
async function trappedTotal(): Promise<number> {
  const metric = await registry.getSingleMetric('smtp_tarpit_handler_errors_total')?.get();
  return (metric?.values ?? []).reduce((sum, v) => sum + v.value, 0);
}

async function until(cond: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(10);
  }
}

type Leave = 'fin' | 'reset';

function leave(client: SmtpClient, how: Leave): void {
  if (how === 'fin') client.socket.end();
  else client.socket.resetAndDestroy();
}

/** Each client from its own /24, so no per-client or per-network limit can stand in for what is tested. */
const addressOf = (i: number): string => `127.77.${i}.1`;

function assertNoTrappedErrors(p: RunningProxy): void {
  const trapped = p.logs.filter((l) => l.msg === 'trapped error');
  assert.deepEqual(trapped, [], 'no trapped error log line');
}

test('100 clients that hang up mid-DATA (half FIN, half reset): handler_errors_total stays 0, each log line says hangup "body", nothing half-sent is delivered', async (t) => {
  const backend = await FakeBackend.start();
  t.after(() => backend.stop());
  const N = 100;
  await withProxy({ backendPort: backend.port, config: { backend: { poolSize: 20 } } }, async (p) => {
    const before = await trappedTotal();
    for (let i = 0; i < N; i++) {
      const client = await SmtpClient.open({ port: p.port, localAddress: addressOf(i) });
      assert.equal((await client.command('EHLO hangup.example')).code, 250);
      assert.equal((await client.command(`MAIL FROM:<bot${i}@hangup.example>`)).code, 250);
      assert.equal((await client.command('RCPT TO:<victim@dest.example>')).code, 250);
      const dataSeen = backend.commands('DATA').length;
      assert.equal((await client.command('DATA')).code, 354);
      client.write(`Subject: half ${i}\r\n\r\nthe first half of a message, and then`);
      // Half of them leave once the backend is in its DATA too (the body is streaming), half at once
      // (the relay may still be waiting for the backend's 354): the two ways the body can fail.
      if (i % 2 === 0) await until(() => backend.commands('DATA').length > dataSeen, `backend DATA for client ${i}`);
      leave(client, i % 4 < 2 ? 'fin' : 'reset');
    }
    const lines = await p.waitSessions(N, 20_000);
    for (let i = 0; i < N; i++) {
      const line = lines.find((l) => l.client === addressOf(i));
      assert.ok(line, `session line for client ${i}`);
      assert.equal(line.hangup, 'body', `client ${i}: ${JSON.stringify(line)}`);
      assert.equal(line.lastStage, 'body', `client ${i}`);
      const messages = line.messages as Array<{ result?: string }>;
      assert.equal(messages[0]?.result, 'aborted', `client ${i}: ${JSON.stringify(messages)}`);
    }
    assert.equal(await trappedTotal(), before, 'handler_errors_total unchanged');
    assertNoTrappedErrors(p);
    // No final dot ever reached the backend, and every backend connection that carried a body was closed.
    assert.equal(backend.messages.length, 0);
    await until(() => backend.active <= p.config.backend.warm, `backend connections closed (${backend.active} open)`);
    // The proxy still relays.
    const ok = await SmtpClient.open({ port: p.port, localAddress: '127.78.0.1' });
    await ok.command('EHLO ok.example');
    const r = await ok.send('ok@sender.example', ['b@dest.example'], 'Subject: fine\r\n\r\nwhole\r\n');
    assert.equal(r.end?.code, 250, JSON.stringify(r));
    await ok.quit();
    assert.equal(backend.messages.length, 1);
  });
});

for (const stage of ['mail', 'rcpt'] as const) {
  test(`a client that hangs up while its ${stage.toUpperCase()} is with the backend: no trapped error, hangup "${stage}"`, async (t) => {
    const verb = stage === 'mail' ? 'MAIL' : 'RCPT';
    // The backend answers this command only after the client has left.
    const backend = await FakeBackend.start({ delay: (v) => (v === verb ? 300 : 0) });
    t.after(() => backend.stop());
    await withProxy({ backendPort: backend.port }, async (p) => {
      const before = await trappedTotal();
      for (let i = 0; i < 4; i++) {
        const client = await SmtpClient.open({ port: p.port, localAddress: addressOf(200 + i) });
        await client.command('EHLO hangup.example');
        if (stage === 'rcpt') assert.equal((await client.command('MAIL FROM:<bot@hangup.example>')).code, 250);
        const seen = backend.commands(verb).length;
        client.write(stage === 'mail' ? 'MAIL FROM:<bot@hangup.example>\r\n' : 'RCPT TO:<victim@dest.example>\r\n');
        await until(() => backend.commands(verb).length > seen, `backend ${verb}`);
        leave(client, i % 2 === 0 ? 'fin' : 'reset');
      }
      const lines = await p.waitSessions(4, 10_000);
      for (const line of lines) assert.equal(line.hangup, stage, JSON.stringify(line));
      // The delayed replies arrive after the clients left; give them time to land on the closed sessions.
      await sleep(500);
      assert.equal(await trappedTotal(), before);
      assertNoTrappedErrors(p);
    });
  });
}

test('a client that falls silent mid-DATA until the idle timeout: 421, closed, the message aborted, no trapped error', async (t) => {
  const backend = await FakeBackend.start();
  t.after(() => backend.stop());
  await withProxy({ backendPort: backend.port, config: { limits: { idleTimeout: 2 } } }, async (p) => {
    const before = await trappedTotal();
    const client = await SmtpClient.open({ port: p.port, localAddress: addressOf(250), timeout: 15_000 });
    t.after(() => client.destroy());
    await client.command('EHLO silent.example');
    await client.command('MAIL FROM:<silent@hangup.example>');
    await client.command('RCPT TO:<victim@dest.example>');
    assert.equal((await client.command('DATA')).code, 354);
    client.write('Subject: silence\r\n\r\nand then nothing');
    assert.equal((await client.read()).code, 421);
    await client.waitClosed(15_000);
    const [line] = await p.waitSessions(1, 10_000);
    assert.equal(line?.lastStage, 'body', JSON.stringify(line));
    assert.equal((line?.messages as Array<{ result?: string }>)[0]?.result, 'aborted', JSON.stringify(line));
    assert.equal(await trappedTotal(), before);
    assertNoTrappedErrors(p);
    assert.equal(backend.messages.length, 0);
  });
});
