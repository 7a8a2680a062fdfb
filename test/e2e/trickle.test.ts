/**
 * Bounded sessions (issue 12, item 2), over real sockets: a client that
 * trickles its message data, or keeps a session busy with NOOPs, is cut off
 * at the DATA-rate or the session deadline with 451 or 421 4.4.2, counted in
 * smtp_tarpit_limit_hits_total{limit} and named in its log line; a network
 * holding its share of the backend pool (backend.maxPerGroup) is refused at
 * MAIL at once; and meanwhile a clean client from another network is relayed
 * as fast as before. Nothing a cut-off client sent is delivered.
 *
 * The trickle test runs against a real Postfix when the machine can run one
 * (root and the postfix package; required in CI), else against the
 * in-process backend. Its verdicts do not depend on the machine's speed: the
 * tricklers send 1 byte every 2 s against a minimum of 100 B/s, a gap of
 * 200×, and the clean client is compared with its own latency on the same
 * machine a moment before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPostfix, type PostfixInstance } from '../helpers/postfix.js';
import { findTool, inCI } from '../helpers/require-tool.js';
import { delta, scrape } from '../helpers/scrape.js';
import { startBackend, type TestBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody, type TestReply } from '../helpers/smtp-client.js';
import { sessionOf, withProxy, type RunningProxy } from '../helpers/with-proxy.js';
import { loadConfigText } from '../../src/config/load.js';
import { stringify } from 'yaml';

const RUN = `${process.pid}-${Date.now().toString(36)}`;

/** The backend under test, as the trickle test sees it. */
interface Backend {
  readonly kind: string;
  readonly port: number;
  /** Messages delivered to `user` whose text holds `marker`. */
  delivered(user: string, marker: string): Promise<number>;
  stop(): Promise<void>;
}

async function startAnyBackend(): Promise<Backend> {
  const postfixPossible = findTool('postfix') !== undefined && process.getuid?.() === 0;
  if (!postfixPossible && inCI) throw new Error('the trickle test needs Postfix in CI (root and the postfix package)');
  if (postfixPossible) {
    const pf: PostfixInstance = await startPostfix({ xclientHosts: '127.0.0.1', mynetworks: '127.0.0.0/8' });
    return {
      kind: 'Postfix',
      port: pf.port,
      async delivered(user, marker) {
        return (await pf.readMailbox(user)).filter((m) => m.includes(marker)).length;
      },
      stop: () => pf.stop(),
    };
  }
  const backend: TestBackend = await startBackend();
  return {
    kind: 'smtp-server',
    port: backend.port,
    delivered: (user, marker) =>
      Promise.resolve(backend.messages.filter((m) => m.to.some((to) => to.startsWith(`${user}@`)) && m.body.toString('latin1').includes(marker)).length),
    stop: () => backend.close(),
  };
}

/** One clean message in its own session, timed from connect to the reply to the final dot. */
async function cleanMessage(port: number, subject: string): Promise<number> {
  const started = performance.now();
  const client = await SmtpClient.open({ port, localAddress: '127.20.0.1', timeout: 30_000 });
  try {
    assert.equal((await client.command('EHLO clean.example.org')).code, 250);
    const r = await client.send('sender@clean.example.org', ['alice@local.test'], wireBody(`Subject: ${subject}\n\nclean ${subject}\n`));
    assert.equal(r.end?.code, 250, `clean message: ${JSON.stringify(r)}`);
    return (performance.now() - started) / 1000;
  } finally {
    await client.quit();
  }
}

interface Trickled {
  readonly address: string;
  /** The reply to MAIL: 250, or 451 4.4.5 when the network held its share of the pool. */
  readonly mail: TestReply;
  /** The last reply before the proxy closed the connection. */
  readonly last: TestReply;
}

/**
 * A bot that pins what it can: MAIL, RCPT, DATA and then one byte every
 * `everyMs`; refused at MAIL, it trickles a NOOP instead, byte by byte, over
 * and over. Resolves with the proxy's last reply once it closes the connection.
 */
async function trickler(port: number, address: string, everyMs: number, marker: string): Promise<Trickled> {
  const client = await SmtpClient.open({ port, localAddress: address, timeout: 60_000 });
  assert.equal((await client.command('EHLO bot.example.net')).code, 250);
  const mail = await client.command('MAIL FROM:<bot@example.net>');
  let pending: Promise<TestReply>;
  let bytes: string;
  if (mail.code === 250) {
    assert.equal((await client.command('RCPT TO:<bob@local.test>')).code, 250);
    assert.equal((await client.command('DATA')).code, 354);
    bytes = `Subject: ${marker}\r\n\r\n${'x'.repeat(1000)}`;
    // The only reply after the 354 is the final one, or the proxy's.
    pending = client.read();
  } else {
    bytes = 'NOOP\r\n'.repeat(1000);
    pending = (async () => {
      // A NOOP's 250s, until the reply that ends the session.
      for (;;) {
        const reply = await client.read();
        if (reply.code !== 250) return reply;
      }
    })();
  }
  let i = 0;
  const drip = setInterval(() => {
    if (!client.closed) client.write(bytes[i++ % bytes.length]!);
  }, everyMs);
  try {
    const last = await pending;
    await client.waitClosed(10_000);
    return { address, mail, last };
  } finally {
    clearInterval(drip);
    client.destroy();
  }
}

test('50 tricklers from 5 networks: cut off at the DATA-rate or session deadline, nothing delivered, a clean client relayed as fast as before', async () => {
  const backend = await startAnyBackend();
  try {
    const config = {
      // As shipped: poolSize 50 and maxPerGroup's default, 10 % of it (the test helper turns the share off).
      backend: { poolSize: 50, maxPerGroup: defaultMaxPerGroup(50), warm: 4, acquireTimeout: 10, timeouts: { connect: 5, greeting: 10, command: 10, dataInit: 10, dataBlock: 10, dataDone: 20 } },
      // Fire: dataGrace and sessionTimeout are meant to. idleTimeout (300 s) must not: each trickler sends every 2 s.
      limits: { minDataRate: 100, dataGrace: 3, sessionTimeout: 20 },
    };
    await withProxy({ backendPort: backend.port, config, metrics: true }, async (p) => {
      assert.equal(p.config.backend.maxPerGroup, 5);
      let n = 0;
      const baseline: number[] = [];
      for (let i = 0; i < 5; i++) baseline.push(await cleanMessage(p.port, `clean-${RUN}-${n++}`));
      const normal = Math.max(...baseline);
      const before = await scrape(p.metricsPort);

      const marker = `trickle-${RUN}`;
      const addresses = [1, 2, 3, 4, 5].flatMap((net) => Array.from({ length: 10 }, (_, host) => `127.10.${net}.${host + 1}`));
      const started = performance.now();
      const bots = Promise.all(addresses.map((a) => trickler(p.port, a, 2000, marker)));

      // While the first wave sits in DATA (until dataGrace, 3 s, is over) and the rest trickle NOOPs, the clean client keeps relaying.
      const during: number[] = [];
      while (performance.now() - started < 8_000) during.push(await cleanMessage(p.port, `clean-${RUN}-${n++}`));
      // A pinned pool makes a clean client wait acquireTimeout (10 s) for its 451 4.4.5 (cleanMessage asserts every 250).
      // The typical message must stay within its normal latency plus 1 s; a single one may meet a stall of the loaded
      // CI machine (1.7 s seen beside a 0.15 s normal), never the pool's wait.
      const sorted = [...during].sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)]!;
      assert.ok(median <= normal + 1, `clean messages took ${median.toFixed(3)} s at the median, normally ${normal.toFixed(3)} s (${backend.kind})`);
      for (const seconds of during) assert.ok(seconds < 5, `clean message took ${seconds.toFixed(3)} s, normally ${normal.toFixed(3)} s: it waited for the pool (${backend.kind})`);

      const results = await bots;
      const inData = results.filter((r) => r.mail.code === 250);
      const refused = results.filter((r) => r.mail.code !== 250);
      // Until half the pool (25) was taken any network could take more than its share; from then on each was held to
      // its 5: at most 25 then, plus 5 more for each network still below its share (10 hosts each, so at most two): 35.
      assert.ok(inData.length >= 25 && inData.length <= 35, `in DATA: ${inData.length}`);
      for (const r of refused) assert.deepEqual([r.mail.code, r.mail.enhanced], [451, '4.4.5'], `${r.address} MAIL: ${r.mail.lines.join(' | ')}`);
      for (const r of inData) assert.deepEqual([r.last.code, r.last.enhanced], [451, '4.4.2'], `${r.address} in DATA: ${r.last.lines.join(' | ')}`);
      for (const r of refused) assert.deepEqual([r.last.code, r.last.enhanced], [421, '4.4.2'], `${r.address} after its 451: ${r.last.lines.join(' | ')}`);

      const after = await scrape(p.metricsPort);
      assert.equal(delta(before, after, 'smtp_tarpit_limit_hits_total', { limit: 'data_rate' }), inData.length);
      assert.equal(delta(before, after, 'smtp_tarpit_limit_hits_total', { limit: 'session_time' }), refused.length);
      assert.equal(delta(before, after, 'smtp_tarpit_limit_hits_total', { limit: 'backend_group' }), refused.length);
      await checkLogs(p, inData, 'data_rate');
      await checkLogs(p, refused, 'session_time');

      // A cut body never reached the backend's queue; every clean message did.
      await sleep(1000);
      assert.equal(await backend.delivered('bob', marker), 0, 'no trickled message delivered');
      assert.equal(await backend.delivered('alice', `clean-${RUN}`), n);
    });
  } finally {
    await backend.stop();
  }
});

/** What the loader makes of `backend.maxPerGroup` left out, as the shipped configuration leaves it. */
function defaultMaxPerGroup(poolSize: number): number {
  return loadConfigText(stringify({ backend: { poolSize } }), 'default.yaml').backend.maxPerGroup;
}

async function checkLogs(p: RunningProxy, bots: readonly Trickled[], limit: string): Promise<void> {
  for (const bot of bots) {
    const line = await sessionOf(p, bot.address);
    assert.equal(line.limit, limit, `${bot.address}: ${JSON.stringify(line)}`);
    assert.equal(line.hangup, undefined, 'ended by us, not a hang-up');
    assert.ok((line.reasons as string[]).some((r) => r.startsWith('trickle: ')), `trickle evidence for ${bot.address}: ${JSON.stringify(line.reasons)}`);
  }
}

test('a client that keeps the session busy with NOOPs is closed at limits.sessionTimeout with 421 4.4.2', async () => {
  const backend = await startBackend();
  try {
    await withProxy({ backendPort: backend.port, config: { limits: { sessionTimeout: 3 } }, metrics: true }, async (p) => {
      const before = await scrape(p.metricsPort);
      const started = performance.now();
      const client = await SmtpClient.open({ port: p.port, localAddress: '127.30.0.1', timeout: 30_000 });
      assert.equal((await client.command('EHLO busy.example.org')).code, 250);
      let last: TestReply;
      // Never idle: a NOOP every 0.5 s, far inside any idle timeout.
      for (;;) {
        last = await client.command('NOOP');
        if (last.code !== 250) break;
        await sleep(500);
      }
      const seconds = (performance.now() - started) / 1000;
      assert.deepEqual([last.code, last.enhanced], [421, '4.4.2'], last.lines.join(' | '));
      assert.ok(seconds >= 2.9, `closed after ${seconds.toFixed(3)} s, before its 3 s`);
      await client.waitClosed(10_000);
      const line = await sessionOf(p, '127.30.0.1');
      assert.equal(line.limit, 'session_time');
      const after = await scrape(p.metricsPort);
      assert.equal(delta(before, after, 'smtp_tarpit_limit_hits_total', { limit: 'session_time' }), 1);
      assert.equal(delta(before, after, 'smtp_tarpit_handler_errors_total'), 0);
    });
  } finally {
    await backend.close();
  }
});

test('the session deadline in mid-body: 451 4.4.2, the backend connection dropped before the dot, nothing delivered', async () => {
  const backend = await startBackend();
  try {
    // minDataRate 0: only the session deadline can end this steady but endless body.
    await withProxy({ backendPort: backend.port, config: { limits: { sessionTimeout: 3, minDataRate: 0 } }, metrics: true }, async (p) => {
      const before = await scrape(p.metricsPort);
      const client = await SmtpClient.open({ port: p.port, localAddress: '127.30.0.2', timeout: 30_000 });
      assert.equal((await client.command('EHLO slow.example.org')).code, 250);
      assert.equal((await client.command('MAIL FROM:<a@slow.example.org>')).code, 250);
      assert.equal((await client.command('RCPT TO:<bob@local.test>')).code, 250);
      assert.equal((await client.command('DATA')).code, 354);
      const drip = setInterval(() => {
        if (!client.closed) client.write('line of a body that never ends\r\n');
      }, 100);
      try {
        const reply = await client.read();
        assert.deepEqual([reply.code, reply.enhanced], [451, '4.4.2'], reply.lines.join(' | '));
        await client.waitClosed(10_000);
      } finally {
        clearInterval(drip);
      }
      const line = await sessionOf(p, '127.30.0.2');
      assert.equal(line.limit, 'session_time');
      const messages = line.messages as Array<{ result?: string; reply?: string }>;
      assert.equal(messages[0]?.result, 'tempfailed');
      await sleep(300);
      assert.equal(backend.messages.length, 0, 'no partial message delivered');
      const after = await scrape(p.metricsPort);
      assert.equal(delta(before, after, 'smtp_tarpit_handler_errors_total'), 0);
    });
  } finally {
    await backend.close();
  }
});

test('the session deadline while the backend owes the final reply: the message is let finish (250), then 421 4.4.2', async () => {
  // The backend takes 4 s over its reply to the dot; the deadline (2 s) comes in the middle of that wait.
  const backend = await startBackend({ dataDelayMs: 4000 });
  try {
    await withProxy({ backendPort: backend.port, config: { limits: { sessionTimeout: 2 } } }, async (p) => {
      const client = await SmtpClient.open({ port: p.port, localAddress: '127.30.0.3', timeout: 30_000 });
      assert.equal((await client.command('EHLO patient.example.org')).code, 250);
      const r = await client.send('a@patient.example.org', ['bob@local.test'], wireBody('Subject: late\n\nthe backend is slow\n'));
      assert.equal(r.end?.code, 250, 'the backend took it, and the client hears so');
      const last = await client.read();
      assert.deepEqual([last.code, last.enhanced], [421, '4.4.2'], last.lines.join(' | '));
      await client.waitClosed(10_000);
      assert.equal(backend.messages.length, 1);
      const line = await sessionOf(p, '127.30.0.3');
      assert.equal(line.limit, 'session_time');
      // It delivered: its network's reputation hears `delivered`, not `bad`.
      assert.equal((line.messages as Array<{ result?: string }>)[0]?.result, 'relayed');
    });
  } finally {
    await backend.close();
  }
});
