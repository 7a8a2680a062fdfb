/**
 * Reputation end to end (issue 6): sessions that end feed their network's
 * history through the store, and the history weighs at the next connect.
 * Delivered sessions on the relay path count good, clients that hang up while
 * held count bad; once bad reaches the threshold and outnumbers good, a clean
 * neighbour is held by the weight alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { policyDir } from '../helpers/policy-dir.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, greet, wireBody } from '../helpers/smtp-client.js';
import { heldSeconds, reasons, sessionOf, withProxy, type RunningProxy } from '../helpers/with-proxy.js';

/** A held client (block list) that hangs up during the banner delay; resolves once its session is logged. */
async function hangUp(p: RunningProxy, localAddress: string, nth: number): Promise<void> {
  const c = await SmtpClient.connect({ port: p.port, localAddress, timeout: 3000 });
  c.destroy();
  const line = await sessionOf(p, localAddress, nth);
  assert.equal(line.outcome, 'hangup', JSON.stringify(line));
}

test('delivered sessions count good, hang-ups while held count bad; the weight comes once bad reaches the threshold and outnumbers good', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    block: ['127.0.50.1'],
    policy: {
      rate: { group: { ipv4: 24, ipv6: 64 } },
      reputation: { enabled: true, weight: 3, threshold: 2, halfLife: 86400 },
    },
  });
  await withProxy({ backendPort: backend.port, config: { policies } }, async (p) => {
    for (let i = 1; i <= 2; i++) {
      const c = await SmtpClient.open({ port: p.port, localAddress: '127.0.50.10', timeout: 5000 });
      assert.equal((await c.command('EHLO mx.example.org')).code, 250);
      assert.equal((await c.send('a@example.org', ['b@example.net'], wireBody('Subject: good\n\nx\n'))).end?.code, 250);
      await c.quit();
      await sessionOf(p, '127.0.50.10', i);
    }
    await hangUp(p, '127.0.50.1', 1);
    await hangUp(p, '127.0.50.1', 2);
    const even = await greet(p.port, '127.0.50.3');
    even.client.destroy();
    // Whether it was held is read from its log line: a stopwatch on a loaded machine cannot tell.
    const evenLine = await sessionOf(p, '127.0.50.3', 1);
    assert.equal(heldSeconds(evenLine), 0, `2 bad, 2 delivered: no weight, no hold (${JSON.stringify(evenLine)})`);
    assert.ok(!reasons(evenLine).some((r) => r.startsWith('reputation')));

    await hangUp(p, '127.0.50.1', 3);
    const held = await greet(p.port, '127.0.50.3');
    held.client.destroy();
    assert.ok(held.seconds >= 0.25, `3 bad against 2 delivered: held by the tarpit (banner after ${held.seconds} s)`);
    const line = await sessionOf(p, '127.0.50.3', 2);
    assert.equal(line.verdict, 'tarpit', JSON.stringify(line));
    assert.ok(reasons(line).some((r) => r.startsWith("reputation +3: client's network has 3 recent bad sessions against 2 delivered")), JSON.stringify(line.reasons));
    // Another network has its own history.
    const other = await greet(p.port, '127.0.51.3');
    other.client.destroy();
    assert.equal(heldSeconds(await sessionOf(p, '127.0.51.3', 1)), 0);
  });
});
