import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy } from '../helpers/with-proxy.js';

test('/metrics exports the relay\'s counters and gauges, /healthz answers, /readyz follows the backend', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, metrics: true }, async (p) => {
    const base = `http://127.0.0.1:${p.metricsPort}`;
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO m.example');
    await client.send('a@sender.example', ['b@dest.example'], wireBody('x\n'));
    await client.quit();
    await p.waitSessions(1);
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const text = await res.text();
    for (const name of [
      'smtp_tarpit_connections_total',
      'smtp_tarpit_connections_active',
      'smtp_tarpit_messages_total',
      'smtp_tarpit_recipients_total',
      'smtp_tarpit_backend_pool_connections',
      'smtp_tarpit_backend_pool_size',
      'smtp_tarpit_backend_reply_seconds',
      'smtp_tarpit_handler_errors_total',
      'smtp_tarpit_nodejs_eventloop_lag_seconds',
      'smtp_tarpit_process_resident_memory_bytes',
    ]) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
    }
    assert.match(text, /^smtp_tarpit_messages_total\{result="relayed"\} [1-9]/m);
    assert.doesNotMatch(text, /127\.0\.0\.1/, 'no client addresses in labels');
    assert.equal((await fetch(`${base}/healthz`)).status, 200);
    const ready = await fetch(`${base}/readyz`);
    assert.equal(ready.status, 200, await ready.clone().text());
    await backend.close();
    // The pool notices the dead backend on its next attempt; readyz turns 503.
    let status = 200;
    for (let i = 0; i < 100 && status === 200; i++) {
      const c = await SmtpClient.open({ port: p.port });
      await c.command('EHLO m.example');
      await c.command('MAIL FROM:<a@sender.example>');
      await c.quit();
      status = (await fetch(`${base}/readyz`)).status;
    }
    assert.equal(status, 503);
  });
});
