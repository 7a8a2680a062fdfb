/**
 * The greet wait that ends in a hand-over (issue 4, `end: relay`): a first
 * contact is held only before its banner; one that says nothing meanwhile is
 * allowlisted and relayed in the same connection by smtp-server, one that
 * talks first is not. Real proxy, real loopback sockets, in-process backend;
 * no DNS zones in these policies, so no DNS server is needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadPolicyText } from '../../src/policy/load.js';
import { PolicyErrors } from '../../src/policy/policy-error.js';
import { policyDir, policyText, type TestPolicy } from '../helpers/policy-dir.js';
import type { TestContext } from '../helpers/require-tool.js';
import { scrape } from '../helpers/scrape.js';
import { startBackend, type TestBackend } from '../helpers/smtp-backend.js';
import { greet, wireBody } from '../helpers/smtp-client.js';
import { heldSeconds, withProxy, type RunningProxy } from '../helpers/with-proxy.js';
import { PATIENCE_MS } from '../helpers/wait-for.js';

const GREET_WAIT: TestPolicy = {
  policy: {
    firstContact: { enabled: true, profile: 'greet-wait' },
    profiles: { 'greet-wait': { delays: { banner: 1, helo: 0, mail: 0, rcpt: 0, data: 0 }, end: 'relay' } },
  },
};

async function withGreetWait(t: TestContext, fn: (p: RunningProxy, backend: TestBackend) => Promise<void>): Promise<void> {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { policies: policyDir(t, GREET_WAIT) }, metrics: true }, (p) => fn(p, backend));
}

function linesOf(p: RunningProxy, client: string): Array<Record<string, unknown>> {
  return p.sessionLogs().filter((l) => l.client === client);
}

async function settle(p: RunningProxy, client: string, n: number): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + PATIENCE_MS;
  while (linesOf(p, client).length < n) {
    if (Date.now() > deadline) throw new Error(`${linesOf(p, client).length} of ${n} session lines for ${client}: ${JSON.stringify(p.sessionLogs())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  // Long enough for a second line for the same connection to show up, if one were written.
  await new Promise((r) => setTimeout(r, 200));
  return linesOf(p, client);
}

test('a silent first contact waits the banner delay, then is relayed in the same connection and allowlisted', async (t) => {
  await withGreetWait(t, async (p, backend) => {
    const address = '127.0.31.1';
    const active = async () => {
      const m = await scrape(p.metricsPort);
      return { held: m.sum('smtp_tarpit_connections_active', { state: 'held' }), relaying: m.sum('smtp_tarpit_connections_active', { state: 'relaying' }) };
    };
    const before = await active();
    const first = await greet(p.port, address);
    assert.equal(first.banner.code, 220);
    assert.ok(first.seconds >= 0.95, `banner held by the greet wait (1 s), came after ${first.seconds} s`);
    const ehlo = await first.client.command('EHLO patient.example');
    assert.equal(ehlo.code, 250);
    assert.ok(ehlo.lines.some((l) => l.endsWith('PIPELINING')), 'smtp-server (the relay path) answers, not the hold');
    assert.deepEqual(await active(), { held: before.held, relaying: before.relaying + 1 }, 'counted as relaying, no longer held');
    const sent = await first.client.send('a@patient.example', ['b@dest.example'], wireBody('Subject: greet wait\n\nrelayed at once\n'));
    assert.equal(sent.end?.code, 250, JSON.stringify(sent));
    await first.client.quit();

    assert.equal(backend.messages.length, 1);
    assert.equal(backend.messages[0]?.clientAddress, address);
    assert.equal(backend.messages[0]?.body.toString('latin1'), 'Subject: greet wait\r\n\r\nrelayed at once\r\n');
    const lines = await settle(p, address, 1);
    assert.equal(lines.length, 1, `one session line for one connection: ${JSON.stringify(lines)}`);
    assert.equal(lines[0]?.verdict, 'pass');
    const messages = lines[0]?.messages as Array<Record<string, unknown>>;
    assert.deepEqual(messages.map((m) => m.result), ['relayed']);
    assert.equal(lines[0]?.path, undefined, 'the relay path wrote it, not the hold');
    // The greet wait is part of this session: held at connect, and in its duration.
    const stages = lines[0]?.stages as Record<string, { held: number; client: number }>;
    // Counted once: about what the client waited for its banner, never twice that (a stall on a
    // loaded machine stretches both alike, so the bound scales with what was seen).
    assert.ok(stages.connect!.held >= 0.95 && stages.connect!.held < 1.5 * first.seconds, `connect held ${JSON.stringify(stages)}, banner after ${first.seconds} s`);
    assert.ok((lines[0]?.duration as number) >= stages.connect!.held, `duration ${String(lines[0]?.duration)} counts the wait`);

    // Allowlisted: the next connection is greeted at once.
    const retry = await greet(p.port, address);
    assert.equal(retry.banner.code, 220);
    await retry.client.quit();
    const after = await settle(p, address, 2);
    assert.equal(heldSeconds(after[1]!), 0, `the next connection is greeted at once: ${JSON.stringify(after[1])}`);
    assert.ok((after[1]?.reasons as string[]).some((r) => r.startsWith('allowlist-cache')), JSON.stringify(after[1]));
  });
});

test('a first contact that talks before the banner is not handed over: pregreet evidence, refused by the hold, nothing relayed', async (t) => {
  await withGreetWait(t, async (p, backend) => {
    const address = '127.0.31.2';
    const early = await greet(p.port, address, 'EHLO early.example\r\n');
    assert.equal(early.banner.code, 220);
    assert.ok(early.seconds >= 0.95, `the banner still waits the greet wait (${early.seconds} s)`);
    const ehlo = await early.client.read();
    assert.equal(ehlo.code, 250, 'the early EHLO is answered by the hold after the banner');
    assert.ok(!ehlo.lines.some((l) => l.endsWith('PIPELINING')), 'the hold answers, not smtp-server');
    assert.equal((await early.client.command('MAIL FROM:<a@early.example>')).code, 250);
    // Pregreet weighs 8 in the base policy: reject, answered at RCPT.
    const rcpt = await early.client.command('RCPT TO:<b@dest.example>');
    assert.equal(rcpt.code, 550, rcpt.lines.join(' | '));
    await early.client.quit();

    const lines = await settle(p, address, 1);
    assert.equal(lines.length, 1);
    assert.equal(lines[0]?.path, 'hold');
    assert.equal(lines[0]?.verdict, 'reject');
    assert.equal((lines[0]?.events as Record<string, number>).pregreet, 1);
    assert.equal(backend.messages.length, 0);
    assert.equal(backend.connections.size, 0, 'no XCLIENT for it: the relay path never saw it');

    // Not allowlisted: its next connection is held again.
    const again = await greet(p.port, address);
    assert.ok(again.seconds >= 0.95, `still a first contact (${again.seconds} s)`);
    again.client.destroy();
  });
});

test('the loader refuses end: relay with a delay after the banner, pointing at the delay', () => {
  const text = policyText({ profiles: { 'first-contact': { delays: { banner: 1, helo: 2, mail: 0, rcpt: 0, data: 0 }, end: 'relay' } } });
  let messages: string[] = [];
  try {
    loadPolicyText(text, { dir: 'p', readFile: () => '' });
  } catch (err) {
    assert.ok(err instanceof PolicyErrors, String(err));
    messages = err.errors.map((e) => e.message);
  }
  const line = text.split('\n').findIndex((l) => l.includes('helo: 2')) + 1;
  assert.ok(line > 0);
  assert.deepEqual(messages, [`p/policy.yaml:${line}:${text.split('\n')[line - 1]!.indexOf('2') + 1}: profiles.first-contact.delays.helo: must be 0 with end: relay (the client is handed to the relay path after the banner delay)`]);

  // Every later delay 0: accepted.
  const ok = loadPolicyText(policyText({ profiles: { 'first-contact': { delays: { banner: 1, helo: 0, mail: 0, rcpt: 0, data: 0 }, end: 'relay' } } }), { dir: 'p', readFile: () => '' });
  assert.deepEqual(ok.policy.profiles.get('first-contact')?.end, { kind: 'relay' });
});
