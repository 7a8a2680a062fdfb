/**
 * Shutdown (docs/design.md §4.1): stop accepting, let a transaction in flight finish
 * with the backend's 250, tell idle sessions 421, and never cut a transaction
 * after its 250.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { startProxy } from '../helpers/with-proxy.js';

test('on stop, a message waiting for the backend\'s reply still gets its 250, an idle session gets 421, new clients are refused', async (t) => {
  const backend = await startBackend({ dataDelayMs: 700 });
  t.after(() => backend.close());
  const p = await startProxy({ backendPort: backend.port });
  let stopped = false;
  t.after(async () => {
    if (!stopped) await p.stop();
  });
  const idle = await SmtpClient.open({ port: p.port });
  await idle.command('EHLO idle.example');
  const busy = await SmtpClient.open({ port: p.port });
  await busy.command('EHLO busy.example');
  await busy.command('MAIL FROM:<a@sender.example>');
  await busy.command('RCPT TO:<b@dest.example>');
  await busy.command('DATA');
  busy.write(wireBody('Subject: in flight\n\nx\n') + '.\r\n');
  await new Promise((r) => setTimeout(r, 100));
  const stopping = p.proxy.stop(5);
  stopped = true;
  const idleReply = await idle.read();
  assert.equal(idleReply.code, 421);
  assert.equal(idleReply.enhanced, '4.3.2');
  const final = await busy.read();
  assert.equal(final.code, 250, 'the in-flight message finished with the backend\'s 250');
  const after = await busy.read();
  assert.equal(after.code, 421, 'then the session is closed with 421');
  await stopping;
  assert.equal(backend.messages.length, 1);
  await new Promise<void>((resolve) => {
    const s = connect({ host: '127.0.0.1', port: p.port });
    s.on('error', () => resolve());
    s.on('close', () => resolve());
  });
});
