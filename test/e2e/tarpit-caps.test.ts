/**
 * Tarpit caps (issue 4 item 3): past a cap on held clients, a new suspicious
 * client gets 421 4.7.0 at once instead of a hold, a counter names the cap,
 * and a clean client is still relayed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { policyDir } from '../helpers/policy-dir.js';
import { scrape } from '../helpers/scrape.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend, type TestBackend } from '../helpers/smtp-backend.js';
import type { TestContext } from '../helpers/require-tool.js';
import { withProxy, type RunningProxy } from '../helpers/with-proxy.js';

const HELD = 'smtp_tarpit_connections_active';
const REFUSED = 'smtp_tarpit_tarpit_refused_total';
const MESSAGE = wireBody('Subject: tarpit caps\n\nhello\n');

/** Blocked networks get the tarpit verdict; its 60 s banner delay keeps them held for the whole test, however slow the machine. */
async function withCaps(t: TestContext, tarpit: Record<string, number>, fn: (p: RunningProxy, backend: TestBackend) => Promise<void>): Promise<void> {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    allow: ['127.0.0.1'],
    block: ['127.0.40.0/22', '127.0.50.0/23'],
    policy: { profiles: { tarpit: { delays: { banner: 60, helo: 60, mail: 60, rcpt: 60, data: 60 } } } },
  });
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies, tarpit } }, (p) => fn(p, backend));
}

async function heldNow(p: RunningProxy): Promise<number> {
  return (await scrape(p.metricsPort)).sum(HELD, { state: 'held' });
}

async function refusedNow(p: RunningProxy, cap: string): Promise<number> {
  return (await scrape(p.metricsPort)).sum(REFUSED, { cap });
}

/** Connects a client the policy holds and waits until the front has handed it to the tarpit. */
async function hold(p: RunningProxy, localAddress: string): Promise<SmtpClient> {
  const before = await heldNow(p);
  const client = await SmtpClient.connect({ port: p.port, localAddress });
  const deadline = Date.now() + 15_000;
  while ((await heldNow(p)) <= before) {
    if (Date.now() > deadline) throw new Error(`${localAddress} was not held`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return client;
}

/** A client past a cap: 421 4.7.0 well before the held clients' 60 s banner, then a close. */
async function assertRefused(p: RunningProxy, localAddress: string): Promise<void> {
  const started = Date.now();
  const client = await SmtpClient.connect({ port: p.port, localAddress });
  const reply = await client.read();
  const ms = Date.now() - started;
  assert.equal(reply.code, 421, reply.lines.join(' | '));
  assert.equal(reply.enhanced, '4.7.0');
  assert.match(reply.text, /Too busy/);
  assert.ok(ms < 15_000, `refused at once, not held: ${ms} ms`);
  await client.waitClosed(2000);
}

async function assertRelays(p: RunningProxy, backend: TestBackend): Promise<void> {
  const before = backend.messages.length;
  const clean = await SmtpClient.open({ port: p.port, localAddress: '127.0.0.1' });
  assert.equal((await clean.command('EHLO clean.example')).code, 250);
  const sent = await clean.send('a@clean.example', ['b@dest.example'], MESSAGE);
  assert.equal(sent.end?.code, 250, JSON.stringify(sent));
  assert.equal(backend.messages.length, before + 1);
  await clean.quit();
}

function sessionLine(p: RunningProxy, client: string): Record<string, unknown> | undefined {
  return p.sessionLogs().find((l) => l.client === client && l.path === 'refused');
}

test('past tarpit.maxHeld a suspicious client gets 421 4.7.0 at once while a clean client from 127.0.0.1 still relays', async (t) => {
  await withCaps(t, { maxHeld: 3 }, async (p, backend) => {
    const refusedBefore = await refusedNow(p, 'held');
    // Distinct /24s, so only the global cap can be what refuses the fourth.
    const held = [];
    for (const address of ['127.0.40.1', '127.0.41.1', '127.0.42.1']) held.push(await hold(p, address));
    assert.equal(await heldNow(p), 3);
    await assertRefused(p, '127.0.43.1');
    assert.equal(await refusedNow(p, 'held'), refusedBefore + 1);
    const line = sessionLine(p, '127.0.43.1');
    assert.ok(line, JSON.stringify(p.sessionLogs()));
    assert.equal(line.cap, 'held');
    assert.equal(line.reply, 421);
    assert.equal(line.verdict, 'tarpit');

    await assertRelays(p, backend);
    assert.equal(await refusedNow(p, 'held'), refusedBefore + 1, 'the clean client met no cap');
    for (const c of held) assert.equal(c.closed, false, 'the held clients are still held');

    // A held client that hangs up frees its place.
    held[0]!.destroy();
    const deadline = Date.now() + 15_000;
    while ((await heldNow(p)) > 2) {
      if (Date.now() > deadline) throw new Error('the hung-up client was not released');
      await new Promise((r) => setTimeout(r, 20));
    }
    held.push(await hold(p, '127.0.43.1'));
    await assertRefused(p, '127.0.43.2');
    assert.equal(await refusedNow(p, 'held'), refusedBefore + 2);
    for (const c of held) c.destroy();
  });
});

test('tarpit.maxHeldPerClient and maxHeldPerGroup refuse one address and one /24 while other networks are still held', async (t) => {
  await withCaps(t, { maxHeldPerClient: 2, maxHeldPerGroup: 3 }, async (p, backend) => {
    const clientBefore = await refusedNow(p, 'per_client');
    const groupBefore = await refusedNow(p, 'per_group');
    const held = [await hold(p, '127.0.50.1'), await hold(p, '127.0.50.1')];
    await assertRefused(p, '127.0.50.1');
    assert.equal(await refusedNow(p, 'per_client'), clientBefore + 1);
    assert.equal(sessionLine(p, '127.0.50.1')?.cap, 'per_client');

    held.push(await hold(p, '127.0.50.2'));
    await assertRefused(p, '127.0.50.3');
    assert.equal(await refusedNow(p, 'per_group'), groupBefore + 1);
    assert.equal(sessionLine(p, '127.0.50.3')?.cap, 'per_group');

    // The neighbouring /24 is another group.
    held.push(await hold(p, '127.0.51.1'));
    assert.equal(await heldNow(p), 4);
    await assertRelays(p, backend);
    assert.equal(await refusedNow(p, 'per_client'), clientBefore + 1);
    assert.equal(await refusedNow(p, 'per_group'), groupBefore + 1);
    for (const c of held) assert.equal(c.closed, false);
    for (const c of held) c.destroy();
  });
});
