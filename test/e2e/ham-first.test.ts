/**
 * Ham first (issue 11), over real sockets: the real proxy with the shipped
 * policy, the project's DNS server (dnsmasq: the test zone answers a
 * forward-confirmed google.com name for the known sender and no PTR for
 * anyone else) and a real Postfix as the backend, which receives every
 * message. Time is scaled by 1/6 so the file runs in about a minute: the
 * first-contact hold is 2 s a stage (shipped 12), the retry pause 10 s
 * (shipped 60), the tarpit 4 s a stage (shipped 25), bots' patience 1.7, 3.3
 * and 5 s (10, 20 and 30 s in the field), a slow MTA's retry 50 s (Postfix's
 * 300 s). Each legitimate sender's time from first attempt to delivery is
 * measured beside the bots it stops; the figures go to the test's output.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDocument } from 'yaml';
import { untilDelivered, type Delivery, type Visit } from '../../scripts/demo/crowd.js';
import { runBot } from '../helpers/bot.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { sharedDnsServer, TEST_DNS } from '../helpers/dns-server.js';
import { canRunPostfix, startPostfix } from '../helpers/postfix.js';
import { requireTool } from '../helpers/require-tool.js';
import { heldSeconds, reasons, withProxy, type RunningProxy } from '../helpers/with-proxy.js';

/** dnsmasq answers every name these tests ask: a lookup timeout must never fire, even on a loaded machine. */
const DNS_TIMEOUT = 5;

const dns = sharedDnsServer();

/** The 1/6 scale: shipped seconds to this test's. */
const HOLD_STAGE = 2;
const TARPIT_STAGE = 4;
const MIN_RETRY_DELAY = 10;
/** An MTA's queue retries a little after the pause (a real Postfix: 300 s after a 60 s pause). */
const MTA_RETRY = 11;
const SLOW_MTA_RETRY = 50;

/** The shipped policies/ with the delays and the pause scaled; nothing else changed. */
function scaledPolicies(dir: string): string {
  const policies = join(dir, 'policies');
  cpSync('policies', policies, { recursive: true });
  const file = join(policies, 'policy.yaml');
  const doc = parseDocument(readFileSync(file, 'utf8'));
  const stages = (s: number) => ({ banner: s, helo: s, mail: s, rcpt: s, data: s });
  doc.setIn(['profiles', 'first-contact', 'delays'], stages(HOLD_STAGE));
  doc.setIn(['profiles', 'tarpit', 'delays'], stages(TARPIT_STAGE));
  doc.setIn(['firstContact', 'minRetryDelay'], MIN_RETRY_DELAY);
  writeFileSync(file, doc.toString());
  return policies;
}

/** An MTA's try: waits for every reply (RFC 5321 §4.5.3.2 asks for minutes), a fully qualified HELO (the crowd's). */
function mta(address: string, from: string): Visit {
  return { address, style: 'polite', patience: 120, from, to: ['alice@local.test'] };
}

/** Every session line the proxy logged for `client`. */
function linesOf(p: RunningProxy, client: string): Array<Record<string, unknown>> {
  return p.sessionLogs().filter((l) => l.client === client);
}

/** `client`'s first `n` session lines, once logged (a session is logged when its socket closes). */
async function waitLines(p: RunningProxy, client: string, n: number): Promise<Array<Record<string, unknown>>> {
  const deadline = Date.now() + 10_000;
  while (linesOf(p, client).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return linesOf(p, client);
}

function seconds(d: Delivery): string {
  return d.delivered === undefined ? 'never' : `${d.delivered.toFixed(1)} s`;
}

test('ham first, with a real Postfix behind and the project\'s DNS server: known senders and pools pass at once, patient MTAs after one hold, while every bot is stopped', async (t) => {
  if (!requireTool(t, 'dnsmasq') || !canRunPostfix(t)) return;
  const server = await dns.get();
  const postfix = await startPostfix({ xclientHosts: '127.0.0.1' });
  t.after(() => postfix.stop());
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-ham-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = { policies: scaledPolicies(dir), dns: { servers: [server.address], timeout: DNS_TIMEOUT }, smtp: { reverseLookup: true } };

  await withProxy({ backendPort: postfix.port, config }, async (p) => {
    const known = TEST_DNS.knownSender.address;
    const bots = [1.7, 3.3, 5].map((patience, i) => runBot({ port: p.port, localAddress: `127.0.70.${i + 1}`, style: 'polite', patienceMs: patience * 1000 }));
    const pregreeters = [1, 2].map((i) => runBot({ port: p.port, localAddress: `127.0.71.${i}`, style: 'pregreet', patienceMs: 5000 }));
    const [knownSender, patient, pool, slow, retrier, ...stopped] = await Promise.all([
      untilDelivered(p.port, { tries: [mta(known, 'news@google.test')], retryAfter: MTA_RETRY }),
      untilDelivered(p.port, { tries: [mta('127.0.61.1', 'patient@mta.test'), mta('127.0.61.1', 'patient@mta.test')], retryAfter: MTA_RETRY }),
      // A big sender's pool: its retry comes from a neighbour in the same /24.
      untilDelivered(p.port, { tries: [mta('127.0.62.1', 'pool@bigsender.test'), mta('127.0.62.2', 'pool@bigsender.test')], retryAfter: MTA_RETRY }),
      untilDelivered(p.port, { tries: [mta('127.0.63.1', 'slow@mta.test'), mta('127.0.63.1', 'slow@mta.test')], retryAfter: SLOW_MTA_RETRY }),
      // A bot that sits the hold out like an MTA, then hammers: 2 s after each 451, the same message again.
      untilDelivered(p.port, { tries: [1, 2, 3].map(() => mta('127.0.64.1', 'bot@spam.test')), retryAfter: 2 }),
      ...bots,
      ...pregreeters,
    ]);
    t.diagnostic(
      `first attempt to delivery: known sender ${seconds(knownSender)}, patient MTA ${seconds(patient)}, pool MTA ${seconds(pool)}, ` +
        `slow MTA ${seconds(slow)}; bots stopped ${stopped.filter((b) => 'gaveUp' in b).length} of 5, the hammering retrier ${retrier.delivered === undefined ? 'stopped' : 'delivered'}`,
    );

    // The known sender: relayed on its first connection, no hold, the rule named.
    assert.equal(knownSender.tries.length, 1);
    assert.ok(knownSender.delivered !== undefined, `delivered: ${seconds(knownSender)}`);
    const [knownLine] = linesOf(p, known);
    // No hold, read from the log: a delivery through DNS and Postfix on a loaded machine can take longer than a hold stage.
    assert.equal(heldSeconds(knownLine ?? {}), 0, `no hold: ${JSON.stringify(knownLine)}`);
    assert.equal(knownLine?.knownSender, 'knownSenders.rdnsSuffixes: google.com', JSON.stringify(knownLine));
    assert.equal(knownLine?.firstContact, false);

    // The patient MTA: held once, a clean 451, QUIT and 221; its retry after the pause relayed.
    assert.equal(patient.tries.length, 2, JSON.stringify(patient.tries));
    const first = patient.tries[0]!.replies;
    assert.match(first.at(-2) ?? '', /^451 4\.7\.1 /, first.join(' | '));
    assert.match(first.at(-1) ?? '', /^221 /, `QUIT after the 451 is answered: ${first.join(' | ')}`);
    assert.ok(patient.delivered !== undefined);
    const [heldLine, relayedLine] = linesOf(p, '127.0.61.1');
    assert.equal(heldLine?.outcome, 'survived', JSON.stringify(heldLine));
    assert.equal(heldLine?.hangup, undefined, 'a client that got its answer and left did not hang up');
    assert.equal(relayedLine?.passed, 'address', JSON.stringify(relayedLine));

    // The pool: its neighbour's retry relayed at once, through the network's pass.
    assert.equal(pool.tries.length, 2);
    assert.ok(pool.delivered !== undefined);
    const [neighbourLine] = linesOf(p, '127.0.62.2');
    assert.equal(heldSeconds(neighbourLine ?? {}), 0, `the neighbour met no hold (${pool.tries[1]!.seconds.toFixed(1)} s): ${JSON.stringify(neighbourLine)}`);
    assert.equal(neighbourLine?.passed, 'network', JSON.stringify(neighbourLine));
    assert.ok(reasons(neighbourLine ?? {}).includes('allowlist-cache: its network passed a hold (allowlist cache, allowlistCache.network)'));

    // The slow MTA: delivered by its late retry.
    assert.equal(slow.tries.length, 2);
    assert.ok(slow.delivered !== undefined);

    // Every bot stopped: none delivered, the hammering retrier held again each time.
    assert.equal(retrier.delivered, undefined, JSON.stringify(retrier.tries));
    assert.equal(retrier.tries.length, 3);
    const retrierLines = linesOf(p, '127.0.64.1');
    assert.equal(retrierLines.length, 3);
    for (const line of retrierLines.slice(1)) {
      assert.equal(line.path, 'hold', JSON.stringify(line));
      assert.ok(reasons(line).some((r) => r.startsWith('early-retry +1: came back')), JSON.stringify(line.reasons));
    }
    // Its first hold earned its /24 a pass; its hammering withdrew it: a neighbour is a first contact again.
    assert.deepEqual(retrierLines[0]?.remembered, { address: 'added', network: 'added' });
    assert.deepEqual(retrierLines[1]?.remembered, { address: 'restarted', network: 'dropped' });
    const neighbour = await SmtpClient.connect({ port: p.port, localAddress: '127.0.64.2', timeout: 30_000 });
    neighbour.destroy();
    const [neighbourOfBot] = await waitLines(p, '127.0.64.2', 1);
    assert.equal(neighbourOfBot?.path, 'hold', JSON.stringify(neighbourOfBot));
    assert.equal(neighbourOfBot?.passed, undefined);
    for (const bot of stopped) assert.ok('gaveUp' in bot && bot.gaveUp, JSON.stringify(bot));

    // What reached Postfix: exactly the four legitimate messages.
    const delivered = await postfix.waitForMessages('alice', 4, 30_000);
    const senders = delivered.map((m) => /^Return-Path: <([^>]*)>/m.exec(m)?.[1]).sort();
    assert.deepEqual(senders, ['news@google.test', 'patient@mta.test', 'pool@bigsender.test', 'slow@mta.test']);
  });
});

test('a client from loopback held for swaks\' defaults (no PTR, a bare HELO) is told why in its log line, and what would let it through', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const server = await dns.get();
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-ham-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = { policies: scaledPolicies(dir), dns: { servers: [server.address], timeout: DNS_TIMEOUT } };
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config }, async (p) => {
    const client = await SmtpClient.connect({ port: p.port, localAddress: '127.0.65.1', timeout: 30_000 });
    assert.equal((await client.read()).code, 220);
    assert.equal((await client.command('EHLO box')).code, 250);
    client.destroy();
    const [line] = await waitLines(p, '127.0.65.1', 1);
    assert.equal(line?.verdict, 'tarpit', JSON.stringify(line));
    assert.match(
      String(line?.hint),
      /^127\.0\.65\.1 is a local address held in the tarpit: score 3 reaches verdicts\.tarpit \(3\) with no reverse DNS \(PTR\) for 127\.0\.65\.1 \(rdns \+2\); HELO "box" is not a fully qualified domain name \(helo\.notFqdn \+1\)\./,
    );
    assert.match(String(line?.hint), /list 127\.0\.65\.1 in policies\/allow\.cidr/);
  });
});
