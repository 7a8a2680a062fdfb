/**
 * The trap closes every hole smtp-server leaves (docs/platform-notes.md): a throw, a
 * non-Error throw or a rejection in any hook answers that client 451 4.3.0,
 * counts smtp_tarpit_handler_errors_total{stage}, and the next client relays.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { registry } from '../../src/metrics/registry.js';
import type { Fault } from '../../src/smtp/faults.js';
import type { Stage } from '../../src/core/stage.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy } from '../helpers/with-proxy.js';

async function trapped(stage: string): Promise<number> {
  const metric = await registry.getSingleMetric('smtp_tarpit_handler_errors_total')?.get();
  return metric?.values.find((v) => v.labels.stage === stage)?.value ?? 0;
}

const FAULTY = 'faulty@sender.example';
const CASES: ReadonlyArray<[Stage, Fault]> = [
  ['mail', 'throw'],
  ['mail', 'throw-string'],
  ['mail', 'reject'],
  ['rcpt', 'throw'],
  ['rcpt', 'reject'],
  ['data', 'throw'],
  ['data', 'reject'],
];

for (const [stage, fault] of CASES) {
  test(`a ${fault} in the ${stage} hook answers 451 4.3.0, is counted, and the next client relays`, async (t) => {
    const backend = await startBackend();
    t.after(() => backend.close());
    const metricStage = stage === 'data' ? 'body' : stage;
    const before = await trapped(metricStage);
    await withProxy({ backendPort: backend.port, faults: (s, probe) => (s === stage && probe.sender === FAULTY ? fault : undefined) }, async (p) => {
      const client = await SmtpClient.open({ port: p.port });
      await client.command('EHLO faulty.example');
      const r = await client.send(FAULTY, ['b@dest.example'], wireBody('Subject: x\n\nbody\n'));
      const failed = stage === 'mail' ? r.mail : stage === 'rcpt' ? r.rcpt[0] : r.end;
      assert.equal(failed?.code, 451, JSON.stringify(r));
      assert.equal(failed?.enhanced, '4.3.0');
      // The same connection is still in step: the next command gets its own reply.
      assert.equal((await client.command('RSET')).code, 250);
      assert.equal((await client.command('NOOP')).code, 250);
      await client.quit();
      assert.equal(await trapped(metricStage), before + 1);
      const trapLog = p.logs.find((l) => l.msg === 'trapped error');
      assert.ok(trapLog, 'the error is logged');
      assert.equal(trapLog.stage, metricStage);
      assert.equal(typeof trapLog.session, 'string');
      const next = await SmtpClient.open({ port: p.port });
      await next.command('EHLO clean.example');
      const ok = await next.send('clean@sender.example', ['b@dest.example'], wireBody('Subject: y\n\nfine\n'));
      assert.equal(ok.end?.code, 250);
      await next.quit();
      assert.equal(backend.messages.length, 1);
    });
  });
}

test('a throw in the connect hook answers the client with 451 and the next client is served', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const before = await trapped('connect');
  await withProxy({ backendPort: backend.port, faults: (s, probe) => (s === 'connect' && probe.remoteAddress === '127.0.4.1' ? 'throw' : undefined) }, async (p) => {
    const bad = await SmtpClient.connect({ port: p.port, localAddress: '127.0.4.1' });
    const reply = await bad.read();
    assert.equal(reply.code, 451);
    bad.destroy();
    assert.equal(await trapped('connect'), before + 1);
    const good = await SmtpClient.open({ port: p.port, localAddress: '127.0.4.2' });
    await good.quit();
  });
});

test('a throw in the close hook is counted and the proxy keeps serving', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const before = await trapped('quit');
  await withProxy({ backendPort: backend.port, faults: (s, probe) => (s === 'quit' && probe.remoteAddress === '127.0.4.3' ? 'throw' : undefined) }, async (p) => {
    const c = await SmtpClient.open({ port: p.port, localAddress: '127.0.4.3' });
    await c.quit();
    await p.waitSessions(1);
    assert.equal(await trapped('quit'), before + 1);
    const good = await SmtpClient.open({ port: p.port, localAddress: '127.0.4.4' });
    await good.command('EHLO ok.example');
    assert.equal((await good.send('a@b.example', ['c@d.example'], wireBody('x\n'))).end?.code, 250);
    await good.quit();
  });
});
