/**
 * The policy engine end to end (issue 3): real loopback sockets from many
 * 127.x.y.z source addresses, the real proxy, an in-process backend, and a
 * real DNS server (dnsmasq, test/helpers/dns-server.ts) for the DNSBL and
 * DNSWL zones, so no lookup reaches the machine's resolver. Each test writes
 * the policy it is about (test/helpers/policy-dir.ts); the profiles' delays
 * are fractions of a second.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sharedDnsServer, TEST_DNS } from '../helpers/dns-server.js';
import { policyDir, type TestPolicy } from '../helpers/policy-dir.js';
import { requireTool, type TestContext } from '../helpers/require-tool.js';
import { scrape } from '../helpers/scrape.js';
import { startBackend, type BackendBehaviour, type TestBackend } from '../helpers/smtp-backend.js';
import { greet, SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { heldSeconds, reasons, sessionOf, withProxy, type RunningProxy } from '../helpers/with-proxy.js';

const dnsServer = sharedDnsServer();

/**
 * DNS timeouts, s: dnsmasq always answers these zones, so a timeout must never fire, even when
 * a loaded machine is slow to schedule it or us.
 */
const DNS_TIMEOUT = 5;
/** The test DNSBL, listing 127.0.0.2 (answer 127.0.0.2): weight 8 reaches the base policy's reject threshold. */
const BL = { zone: TEST_DNS.bl, weight: 8, answers: ['127.0.0.2-127.0.0.11'], timeout: DNS_TIMEOUT };
/** The test DNSWL, listing 127.0.0.10 (answer 127.0.10.2). */
const WL = { zone: TEST_DNS.wl, weight: -5, answers: ['127.0.10.0/24'], timeout: DNS_TIMEOUT };

interface Options {
  readonly backend?: BackendBehaviour;
  readonly config?: Record<string, unknown>;
  readonly metrics?: boolean;
}

/** The proxy under `spec`, its DNS pointed at the test dnsmasq; skipped (failed in CI) without dnsmasq. */
async function withPolicy(t: TestContext, spec: TestPolicy, fn: (p: RunningProxy, backend: TestBackend) => Promise<void>, options: Options = {}): Promise<void> {
  if (!requireTool(t, 'dnsmasq')) return;
  const dns = await dnsServer.get();
  const backend = await startBackend(options.backend);
  t.after(() => backend.close());
  const config = { policies: policyDir(t, spec), dns: { servers: [dns.address], timeout: DNS_TIMEOUT }, ...options.config };
  await withProxy({ backendPort: backend.port, config, metrics: options.metrics ?? false }, (p) => fn(p, backend));
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; seconds: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, seconds: (performance.now() - start) / 1000 };
}

const MESSAGE = wireBody('Subject: policy e2e\n\nhello\n');

test('a client listed in block.cidr gets the tarpit verdict: held by the profile, never relayed, and ends with the profile\'s reply', async (t) => {
  await withPolicy(t, { block: ['127.0.5.0/24'] }, async (p, backend) => {
    const { client, banner, seconds } = await greet(p.port, '127.0.5.1');
    assert.equal(banner.code, 220);
    assert.ok(seconds >= 0.28, `banner held by the tarpit profile (0.3 s), came after ${seconds} s`);
    const ehlo = await timed(() => client.command('EHLO blocked.example'));
    assert.equal(ehlo.value.code, 250);
    assert.ok(ehlo.seconds >= 0.18, `EHLO held 0.2 s, answered after ${ehlo.seconds} s`);
    assert.ok(!ehlo.value.lines.some((l) => l.endsWith('PIPELINING')), 'the hold offers no PIPELINING');
    assert.equal((await client.command('MAIL FROM:<a@blocked.example>')).code, 250);
    assert.equal((await client.command('RCPT TO:<b@dest.example>')).code, 250);
    const end = await client.command('DATA');
    assert.equal(end.code, 554, end.lines.join(' | '));
    assert.equal(end.enhanced, '5.7.1');
    assert.match(end.text, /Held and refused by the test tarpit/);
    // Not a 421, so the proxy does not close on its own (RFC 5321 §3.8): the client's QUIT ends it.
    assert.equal((await client.command('QUIT')).code, 221);
    await client.waitClosed();

    const log = await sessionOf(p, '127.0.5.1');
    assert.equal(log.verdict, 'tarpit');
    assert.equal(log.path, 'hold');
    assert.equal(log.profile, 'tarpit');
    assert.equal(log.outcome, 'survived');
    assert.ok(reasons(log).some((r) => r.startsWith('block +5') && r.includes('block.cidr') && r.includes('127.0.5.0/24')), JSON.stringify(log.reasons));
    assert.equal(backend.messages.length, 0);
    assert.equal(backend.connections.size, 0, 'no MAIL reached the backend');
  });
});

test('a DNSBL-listed client with weight >= reject gets 250 at MAIL and 550 5.7.1 at RCPT naming the reason class, never the score', async (t) => {
  await withPolicy(t, { policy: { dnsbl: [BL] } }, async (p, backend) => {
    const { client, banner } = await greet(p.port, TEST_DNS.listed.ipv4);
    assert.equal(banner.code, 220);
    assert.equal((await client.command('EHLO listed.example')).code, 250);
    assert.equal((await client.command('MAIL FROM:<a@listed.example>')).code, 250);
    const rcpt = await client.command('RCPT TO:<b@dest.example>');
    assert.equal(rcpt.code, 550, rcpt.lines.join(' | '));
    assert.equal(rcpt.enhanced, '5.7.1');
    assert.match(rcpt.text, /listed on a DNS blocklist/);
    assert.doesNotMatch(rcpt.text, /score|\d/i, 'the score and the zone stay with us');
    assert.doesNotMatch(rcpt.text, /bl\.test/);
    assert.notEqual((await client.command('DATA')).code, 354, 'no DATA without an accepted recipient');
    await client.quit();

    const log = await sessionOf(p, TEST_DNS.listed.ipv4);
    assert.equal(log.verdict, 'reject');
    assert.ok(reasons(log).some((r) => r.startsWith('dnsbl +8') && r.includes('bl.test')), JSON.stringify(log.reasons));
    assert.equal(backend.messages.length, 0);
    assert.equal(backend.connections.size, 0);
  });
});

test('with rejectAt: connect the DNSBL-listed client gets a 554 greeting and is closed; a clean one is greeted', async (t) => {
  await withPolicy(t, { policy: { dnsbl: [BL], verdicts: { rejectAt: 'connect' } } }, async (p, backend) => {
    const { client, banner } = await greet(p.port, TEST_DNS.listed.ipv4);
    assert.equal(banner.code, 554, banner.lines.join(' | '));
    assert.equal(banner.enhanced, '5.7.1');
    assert.match(banner.text, /listed on a DNS blocklist/);
    await client.waitClosed();
    const log = await sessionOf(p, TEST_DNS.listed.ipv4);
    assert.equal(log.verdict, 'reject');
    assert.ok(reasons(log).some((r) => r.startsWith('dnsbl +8')), JSON.stringify(log.reasons));

    const clean = await greet(p.port, TEST_DNS.clean);
    assert.equal(clean.banner.code, 220);
    assert.equal((await clean.client.command('EHLO clean.example')).code, 250);
    assert.equal((await clean.client.send('a@clean.example', ['b@dest.example'], MESSAGE)).end?.code, 250);
    await clean.client.quit();
    assert.equal(backend.messages.length, 1);
    assert.equal(backend.messages[0]?.clientAddress, TEST_DNS.clean);
  });
});

test('an early talker under the first-contact hold is caught: pregreet evidence escalates to reject, refused at RCPT, never relayed', async (t) => {
  const spec: TestPolicy = { policy: { firstContact: { enabled: true }, pregreet: 8 } };
  await withPolicy(t, spec, async (p, backend) => {
    const client = await SmtpClient.connect({ port: p.port, localAddress: '127.0.6.1', timeout: 5000 });
    client.write('EHLO early.example\r\n');
    assert.equal((await client.read()).code, 220);
    assert.equal((await client.read()).code, 250, 'the EHLO sent early is answered after the banner');
    assert.equal((await client.command('MAIL FROM:<a@early.example>')).code, 250);
    const rcpt = await client.command('RCPT TO:<b@dest.example>');
    assert.equal(rcpt.code, 550, rcpt.lines.join(' | '));
    assert.equal(rcpt.enhanced, '5.7.1');
    assert.match(rcpt.text, /sent data before its turn/);
    await client.quit();

    const log = await sessionOf(p, '127.0.6.1');
    assert.equal(log.verdict, 'reject');
    assert.ok(reasons(log).includes('pregreet +8: sent 20 bytes before the banner'), JSON.stringify(log.reasons));
    assert.equal((log.events as Record<string, number>).pregreet, 1);
    assert.equal(backend.connections.size, 0);
  });
});

test('an early talker whose pregreet weighs a drop gets 421 instead of the banner and is closed', async (t) => {
  // A banner wait far above the bound below: "at once" then holds on a loaded machine and still means it.
  const spec: TestPolicy = { policy: { firstContact: { enabled: true }, pregreet: 15, profiles: { 'first-contact': { delays: { banner: 60 } } } } };
  await withPolicy(t, spec, async (p, backend) => {
    const client = await SmtpClient.connect({ port: p.port, localAddress: '127.0.6.2', timeout: 5000 });
    client.write('EHLO early.example\r\n');
    const reply = await timed(() => client.read());
    assert.equal(reply.value.code, 421, reply.value.lines.join(' | '));
    assert.match(reply.value.text, /sent data before its turn/);
    assert.ok(reply.seconds < 15, `dropped at once, not after the 60 s banner wait (${reply.seconds} s)`);
    await client.waitClosed();

    const log = await sessionOf(p, '127.0.6.2');
    assert.equal(log.verdict, 'drop');
    assert.equal(log.outcome, 'dropped');
    assert.equal(backend.connections.size, 0);
  });
});

test('first contact: a new client is held, sits it out, gets 451 4.7.1; its retry from the same address is relayed at once', async (t) => {
  const spec: TestPolicy = { policy: { firstContact: { enabled: true }, dnsbl: [BL], dnswl: [WL], profiles: { 'first-contact': { delays: { banner: 0.6 } } } } };
  await withPolicy(t, spec, async (p, backend) => {
    const address = '127.0.7.1';
    const first = await greet(p.port, address);
    assert.equal(first.banner.code, 220);
    assert.ok(first.seconds >= 0.58, `banner held by the first-contact profile (0.6 s), came after ${first.seconds} s`);
    assert.equal((await first.client.command('EHLO new.example')).code, 250);
    const held = await first.client.send('a@new.example', ['b@dest.example'], MESSAGE);
    assert.equal(held.mail.code, 250);
    assert.equal(held.rcpt[0]?.code, 250);
    assert.equal(held.data?.code, 451, JSON.stringify(held.data));
    assert.equal(held.data?.enhanced, '4.7.1');
    assert.equal((await first.client.command('QUIT')).code, 221, 'the 451 leaves the session open for QUIT');
    await first.client.waitClosed();
    assert.equal(backend.messages.length, 0, 'nothing relayed from the hold');

    const retry = await greet(p.port, address);
    assert.equal(retry.banner.code, 220);
    assert.equal((await retry.client.command('EHLO new.example')).code, 250);
    const body = wireBody('Subject: the retry\n\nsecond try\n');
    const sent = await retry.client.send('a@new.example', ['b@dest.example'], body);
    assert.equal(sent.end?.code, 250, JSON.stringify(sent));
    await retry.client.quit();

    assert.equal(backend.messages.length, 1);
    const m = backend.messages[0]!;
    assert.equal(m.body.toString('latin1'), 'Subject: the retry\r\n\r\nsecond try\r\n');
    assert.equal(m.clientAddress, address);
    const firstLog = await sessionOf(p, address, 1);
    assert.equal(firstLog.firstContact, true);
    assert.equal(firstLog.outcome, 'survived');
    const retryLog = await sessionOf(p, address, 2);
    assert.equal(retryLog.verdict, 'pass');
    assert.equal(heldSeconds(retryLog), 0, 'the retry is greeted at once');
    assert.equal(retryLog.firstContact, false);
    assert.ok(reasons(retryLog).some((r) => r.startsWith('allowlist-cache')), JSON.stringify(retryLog.reasons));
  });
});

test('a client in the allow list relays unchanged with every check skipped, even when block.cidr and first contact would hold it', async (t) => {
  const spec: TestPolicy = {
    allow: [TEST_DNS.clean],
    block: ['127.0.0.0/8'],
    policy: { firstContact: { enabled: true }, profiles: { 'first-contact': { delays: { banner: 0.6 } } } },
  };
  await withPolicy(t, spec, async (p, backend) => {
    const { client, banner } = await greet(p.port, TEST_DNS.clean);
    assert.equal(banner.code, 220);
    const ehlo = await client.command('EHLO trusted.example');
    assert.ok(ehlo.lines.some((l) => l.endsWith('PIPELINING')), 'the relay path (smtp-server) answers');
    const text = 'Subject: trusted\r\n\r\n.leading dot\r\nÄÖÜ\r\n';
    const sent = await client.send('a@trusted.example', ['b@dest.example'], Buffer.from(wireBody(text), 'utf8'));
    assert.equal(sent.end?.code, 250);
    await client.quit();
    assert.deepEqual(backend.messages[0]?.body, Buffer.from(text, 'utf8'));
    assert.equal(backend.messages[0]?.clientAddress, TEST_DNS.clean);

    // Control: a neighbour in block.cidr but not in allow.cidr is held.
    const other = await greet(p.port, '127.0.0.5');
    assert.equal(other.banner.code, 220);
    assert.ok(other.seconds >= 0.28, `the blocked neighbour is held (${other.seconds} s)`);
    other.client.destroy();

    const log = await sessionOf(p, TEST_DNS.clean);
    assert.equal(log.verdict, 'pass');
    assert.equal(heldSeconds(log), 0, 'greeted at once');
    assert.equal(log.score, 0);
    assert.deepEqual(
      reasons(log).map((r) => r.split(':')[0]),
      ['allow'],
      'no check ran but the allow list',
    );
  });
});

test('a DNSWL-listed client skips the first-contact hold; an unlisted one is held', async (t) => {
  const spec: TestPolicy = { policy: { firstContact: { enabled: true }, dnswl: [WL], profiles: { 'first-contact': { delays: { banner: 0.6 } } } } };
  await withPolicy(t, spec, async (p, backend) => {
    const listed = await greet(p.port, TEST_DNS.listed.allowlisted);
    assert.equal(listed.banner.code, 220);
    assert.equal((await listed.client.command('EHLO wl.example')).code, 250);
    assert.equal((await listed.client.send('a@wl.example', ['b@dest.example'], MESSAGE)).end?.code, 250);
    await listed.client.quit();
    assert.equal(backend.messages.length, 1);

    const unlisted = await greet(p.port, '127.0.0.11');
    assert.ok(unlisted.seconds >= 0.55, `the unlisted client is held (${unlisted.seconds} s)`);
    unlisted.client.destroy();

    const log = await sessionOf(p, TEST_DNS.listed.allowlisted);
    assert.equal(log.verdict, 'pass');
    assert.equal(heldSeconds(log), 0, 'the DNSWL-listed client is greeted at once');
    assert.equal(log.firstContact, false);
    assert.ok(reasons(log).some((r) => r.startsWith('dnswl -5')), JSON.stringify(log.reasons));
  });
});

test('a non-SMTP line in a hold weighing a drop gets 421 and the connection is closed', async (t) => {
  // A HELO-stage delay far above the bound below: "at once" then holds on a loaded machine and still means it.
  const spec: TestPolicy = { policy: { firstContact: { enabled: true }, protocol: { nonSmtp: 15 }, profiles: { 'first-contact': { delays: { banner: 0.2, helo: 60 } } } } };
  await withPolicy(t, spec, async (p, backend) => {
    const { client, banner } = await greet(p.port, '127.0.8.1');
    assert.equal(banner.code, 220);
    const reply = await timed(() => client.command('GET / HTTP/1.1'));
    assert.equal(reply.value.code, 421, reply.value.lines.join(' | '));
    assert.equal(reply.value.enhanced, '4.7.1');
    assert.match(reply.value.text, /violated the SMTP protocol/);
    assert.ok(reply.seconds < 15, `at once (${reply.seconds} s)`);
    await client.waitClosed();

    const log = await sessionOf(p, '127.0.8.1');
    assert.equal(log.verdict, 'drop');
    assert.ok(reasons(log).some((r) => r.startsWith('protocol.nonSmtp +15')), JSON.stringify(log.reasons));
    assert.equal(backend.connections.size, 0);
  });
});

test('harvest: recipients the backend refuses escalate a relayed session to reject; the next RCPT gets 550 5.7.1 without reaching the backend', async (t) => {
  const asked: string[] = [];
  const backend: BackendBehaviour = {
    rcpt: (address) => {
      asked.push(address);
      return address.startsWith('nobody') ? { code: 550, text: '5.1.1 User unknown' } : undefined;
    },
  };
  await withPolicy(
    t,
    { policy: { harvest: { rejected: 3, window: 600, weight: 8 } } },
    async (p, b) => {
      const { client, banner } = await greet(p.port, '127.0.11.1');
      assert.equal(banner.code, 220);
      assert.equal((await client.command('EHLO harvester.example')).code, 250);
      assert.equal((await client.command('MAIL FROM:<a@harvester.example>')).code, 250);
      assert.equal((await client.command('RCPT TO:<good@dest.example>')).code, 250);
      for (let i = 1; i <= 3; i++) {
        const r = await client.command(`RCPT TO:<nobody${i}@dest.example>`);
        assert.equal(r.code, 550);
        assert.equal(r.enhanced, '5.1.1', 'the backend\'s own refusal');
      }
      const next = await client.command('RCPT TO:<real@dest.example>');
      assert.equal(next.code, 550, next.lines.join(' | '));
      assert.equal(next.enhanced, '5.7.1');
      assert.match(next.text, /Too many unknown recipients/);
      assert.deepEqual(asked, ['good@dest.example', 'nobody1@dest.example', 'nobody2@dest.example', 'nobody3@dest.example']);
      // smtp-server answers DATA with 354 before any hook runs (good@ was accepted), so the refusal comes after the body.
      const data = await client.command('DATA');
      if (data.code === 354) {
        client.write(MESSAGE + '.\r\n');
        const end = await client.read();
        assert.equal(end.code, 550, end.lines.join(' | '));
        assert.match(end.text, /Too many unknown recipients/);
      } else {
        assert.ok(data.code >= 500, data.lines.join(' | '));
      }
      await client.quit();
      assert.equal(b.messages.length, 0);

      const log = await sessionOf(p, '127.0.11.1');
      assert.equal(log.verdict, 'reject');
      assert.ok(reasons(log).some((r) => r.startsWith('harvest +8')), JSON.stringify(log.reasons));
    },
    { backend },
  );
});

test('metrics after a few sessions: verdicts, checks, DNS lookup latency by zone and allowlist cache hits and misses', async (t) => {
  const spec: TestPolicy = { block: ['127.0.12.9'], policy: { firstContact: { enabled: true }, dnsbl: [BL], dnswl: [WL] } };
  await withPolicy(
    t,
    spec,
    async (p) => {
      // The registry is per process: this file's earlier tests counted too, so compare with a snapshot.
      const before = await scrape(p.metricsPort);

      // A DNSBL-listed client (reject), a DNSWL-listed one (pass), a blocked one (tarpit), and a first contact that survives and retries.
      const listed = await greet(p.port, TEST_DNS.listed.ipv4);
      await listed.client.command('EHLO a.example');
      await listed.client.command('MAIL FROM:<a@a.example>');
      assert.equal((await listed.client.command('RCPT TO:<b@dest.example>')).code, 550);
      await listed.client.quit();
      const wl = await greet(p.port, TEST_DNS.listed.allowlisted);
      await wl.client.quit();
      const blocked = await greet(p.port, '127.0.12.9');
      assert.equal(blocked.banner.code, 220);
      await blocked.client.quit();
      const fresh = await greet(p.port, '127.0.12.1');
      await fresh.client.command('EHLO fresh.example');
      assert.equal((await fresh.client.send('a@fresh.example', ['b@dest.example'], MESSAGE)).data?.code, 451);
      assert.equal((await fresh.client.command('QUIT')).code, 221);
      await fresh.client.waitClosed();
      const again = await greet(p.port, '127.0.12.1');
      assert.equal(again.banner.code, 220);
      await again.client.quit();
      await p.waitSessions(5);

      const after = await scrape(p.metricsPort);
      const delta = (name: string, labels: Record<string, string> = {}) => after.sum(name, labels) - before.sum(name, labels);
      assert.equal(delta('smtp_tarpit_verdicts_total', { verdict: 'reject' }), 1);
      // The blocked client and the first contact (held before it may deliver counts as tarpit).
      assert.equal(delta('smtp_tarpit_verdicts_total', { verdict: 'tarpit' }), 2);
      assert.equal(delta('smtp_tarpit_verdicts_total', { verdict: 'pass' }), 2);
      assert.equal(delta('smtp_tarpit_verdicts_total'), 5);

      assert.equal(delta('smtp_tarpit_checks_total', { check: 'dnsbl', result: 'hit' }), 1);
      assert.equal(delta('smtp_tarpit_checks_total', { check: 'dnswl', result: 'hit' }), 1);
      assert.equal(delta('smtp_tarpit_checks_total', { check: 'dnsbl', result: 'miss' }), 3);
      assert.equal(delta('smtp_tarpit_checks_total', { check: 'dnsbl', result: 'error' }), 0);
      assert.equal(delta('smtp_tarpit_checks_total', { check: 'block', result: 'hit' }), 1);
      assert.equal(delta('smtp_tarpit_checks_total', { check: 'block' }), 5);

      // Four clients' first lookups went to dnsmasq in each zone; the retry was an allowlist cache hit (no lookups).
      for (const zone of [TEST_DNS.bl, TEST_DNS.wl]) {
        const count = delta('smtp_tarpit_dns_lookup_seconds_count', { zone });
        const sum = delta('smtp_tarpit_dns_lookup_seconds_sum', { zone });
        assert.equal(count, 4, `${zone} lookups`);
        // In seconds: no lookup outlives its timeout, whatever the load.
        assert.ok(sum > 0 && sum / count < DNS_TIMEOUT, `${zone}: ${sum} s over ${count} loopback lookups`);
      }
      assert.equal(delta('smtp_tarpit_dns_lookup_seconds_count', { zone: TEST_DNS.bl, result: 'answer' }), 1);
      assert.equal(delta('smtp_tarpit_dns_lookup_seconds_count', { zone: TEST_DNS.bl, result: 'nxdomain' }), 3);

      assert.equal(delta('smtp_tarpit_allowlist_cache_total', { result: 'hit' }), 1);
      assert.equal(delta('smtp_tarpit_allowlist_cache_total', { result: 'miss' }), 4);

      // Every session is over: none is left counted as vetting, held or relaying.
      const deadline = Date.now() + 15_000;
      for (;;) {
        const now = await scrape(p.metricsPort);
        const open = ['vetting', 'held', 'relaying'].map((state) => now.sum('smtp_tarpit_connections_active', { state }) - before.sum('smtp_tarpit_connections_active', { state }));
        if (open.every((n) => n === 0)) break;
        if (Date.now() > deadline) assert.fail(`sessions still counted as active (vetting, held, relaying): ${open.join(', ')}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    { metrics: true },
  );
});
