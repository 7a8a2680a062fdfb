/**
 * A fleet (issue 6): three real proxy processes (`smtp-tarpit serve`, as an
 * admin runs it on three MX hosts) share one real redis-server. What one
 * learns, the others know: a greylisted client that retries on another MX
 * passes, a rate limit holds across all three, a client allowlisted by one is
 * relayed at once by the others. With Redis stopped mid-run the proxies go on
 * from their memory stores, and use Redis again once it is back.
 */
import { spawnSync } from 'node:child_process';
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { writePolicy, type PolicyYaml } from '../helpers/policy-dir.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { requireTool } from '../helpers/require-tool.js';
import { scrape } from '../helpers/scrape.js';
import { startBackend, type TestBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, greet, wireBody } from '../helpers/smtp-client.js';
import { waitFor } from '../helpers/wait-for.js';
import { heldSeconds } from '../helpers/with-proxy.js';
import { ROOT, freePort, startServe, writeConfig, type ServeProcess } from '../cli/serve-process.js';

interface Mx {
  /** Its configuration file. */
  readonly config: string;
  readonly port: number;
  readonly metricsPort: number;
  readonly serve: ServeProcess;
}

interface Fleet {
  readonly mx: readonly Mx[];
  readonly backend: TestBackend;
  readonly redis: RedisServer;
}

async function startFleet(t: TestContext, policy: PolicyYaml, n = 3): Promise<Fleet> {
  const redis = await startRedisServer();
  t.after(() => redis.dispose());
  const backend = await startBackend();
  t.after(() => backend.close());
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-fleet-'));
  chmodSync(dir, 0o755);
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writePolicy(dir, { policy });
  const mx: Mx[] = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    const metricsPort = await freePort();
    const config = writeConfig({
      listen: `127.0.0.1:${port}`,
      backend: { address: `127.0.0.1:${backend.port}` },
      metrics: { listen: `127.0.0.1:${metricsPort}` },
      policies: dir,
      // The shipped 0.1 s Redis timeout would send calls to memory whenever a loaded machine stalls
      // Redis or a proxy, and then nothing is shared; the outage test stops Redis, which needs no timeout.
      state: { store: redis.url, prefix: 'fleet-test:', timeout: 10 },
    });
    const serve = startServe(config);
    t.after(() => serve.kill('SIGKILL'));
    mx.push({ config, port, metricsPort, serve });
  }
  for (const m of mx) await m.serve.waitLog((l) => l.msg === 'smtp-tarpit listening');
  return { mx, backend, redis };
}

/** MAIL and one RCPT from `address`; the RCPT's reply code; the session is quit. */
async function rcptCode(port: number, address: string, to: string): Promise<number> {
  const client = await SmtpClient.open({ port, localAddress: address });
  await client.command('EHLO fleet.example');
  await client.command('MAIL FROM:<sender@fleet.example>');
  const rcpt = await client.command(`RCPT TO:<${to}>`);
  await client.quit();
  return rcpt.code;
}

async function sendOne(port: number, address: string): Promise<number | undefined> {
  const client = await SmtpClient.open({ port, localAddress: address });
  await client.command('EHLO fleet.example');
  const sent = await client.send('sender@fleet.example', ['rcpt@dest.example'], wireBody('Subject: fleet\n\nhello\n'));
  await client.quit();
  return sent.end?.code;
}

test('greylisting is shared: a client greylisted by one MX passes on another after the delay; its network then passes everywhere', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'redis-server')) return;
  // The second try must come inside minDelay: 3 s leaves a loaded machine room for one more session.
  const { mx, backend, redis } = await startFleet(t, { greylisting: { enabled: true, minDelay: 3 } });
  const [a, b, c] = mx as [Mx, Mx, Mx];
  assert.equal(await rcptCode(a.port, '127.61.0.1', 'rcpt@dest.example'), 451, 'first sight: greylisted');
  assert.equal(await rcptCode(b.port, '127.61.0.1', 'rcpt@dest.example'), 451, 'too early, on another MX: still greylisted');
  // explain --store reads the fleet's memory: the triplet first seen on A is pending.
  const explained = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'explain', '--config', a.config, '--store', redis.url, '--ip', '127.61.0.1', '--from', 'sender@fleet.example', '--rcpt', 'rcpt@dest.example', '--json'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(explained.status, 0, explained.stderr);
  assert.equal((JSON.parse(explained.stdout) as { greylisting?: { state?: string } }).greylisting?.state, 'pending', explained.stdout);
  await sleep(3200);
  assert.equal(await sendOne(c.port, '127.61.0.1'), 250, 'the retry on a third MX passes');
  assert.equal(backend.messages.length, 1);
  assert.equal(backend.messages[0]?.clientAddress, '127.61.0.1');
  // Another address of the same network, another triplet, another MX: the network passed.
  const client = await SmtpClient.open({ port: a.port, localAddress: '127.61.0.77' });
  await client.command('EHLO fleet.example');
  await client.command('MAIL FROM:<other@fleet.example>');
  assert.equal((await client.command('RCPT TO:<someone@dest.example>')).code, 250);
  await client.quit();
  // Two round trips per session: each session's slot went back inside its `finish`, never on its own.
  for (const m of mx) {
    await waitFor(async () => (await scrape(m.metricsPort)).sum('smtp_tarpit_store_operations_total', { store: 'redis', operation: 'finish' }) >= 1, {
      what: 'a finish on every MX',
    });
    const metrics = await scrape(m.metricsPort);
    assert.equal(metrics.sum('smtp_tarpit_store_operations_total', { store: 'redis', operation: 'release' }), 0, 'no separate release round trip');
  }
});

test('a rate limit of N per minute holds across three MX hosts', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'redis-server')) return;
  // Over the limit the rate weight (15) reaches `drop`: 421 before any banner.
  const { mx } = await startFleet(t, { rate: { group: { ipv4: 24, ipv6: 64 }, maxConcurrent: 1000, maxPerMinute: 6, weight: 15 } });
  const codes: number[] = [];
  for (let i = 0; i < 9; i++) {
    const m = mx[i % 3]!;
    const { client, banner } = await greet(m.port, `127.62.0.${i + 1}`);
    codes.push(banner.code);
    client.socket.destroy();
  }
  assert.deepEqual(codes, [220, 220, 220, 220, 220, 220, 421, 421, 421], 'six sessions a minute from the /24, whichever MX they reach');
});

test('race: 50 sessions at once from one /24 across three MX hosts never exceed a limit of 20 per minute', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'redis-server')) return;
  const { mx } = await startFleet(t, { rate: { group: { ipv4: 24, ipv6: 64 }, maxConcurrent: 1000, maxPerMinute: 20, weight: 15 } });
  const codes = await Promise.all(
    Array.from({ length: 50 }, async (_, i) => {
      const { client, banner } = await greet(mx[i % 3]!.port, `127.65.0.${i + 1}`);
      client.socket.destroy();
      return banner.code;
    }),
  );
  assert.equal(codes.filter((c) => c === 220).length, 20, `exactly 20 greeted: ${codes.join(' ')}`);
  assert.equal(codes.filter((c) => c === 421).length, 30);
});

test('the allowlist cache is shared: a first contact held by one MX is relayed at once by another', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'redis-server')) return;
  const { mx, backend } = await startFleet(t, { firstContact: { enabled: true, profile: 'first-contact' } });
  const [a, b] = mx as [Mx, Mx, Mx];
  // First contact on A: held through every stage, told 451 4.7.1 at DATA's end, allowlisted.
  const client = await SmtpClient.open({ port: a.port, localAddress: '127.63.0.1' });
  await client.command('EHLO fleet.example');
  const held = await client.send('sender@fleet.example', ['rcpt@dest.example'], wireBody('x\n'));
  await client.quit();
  const final = held.end ?? held.data ?? held.rcpt[0];
  assert.equal(final?.code, 451, JSON.stringify(held));
  assert.equal(backend.messages.length, 0);
  // Its retry, on B: no hold, relayed.
  const { client: retry } = await greet(b.port, '127.63.0.1');
  await retry.command('EHLO fleet.example');
  assert.equal((await retry.send('sender@fleet.example', ['rcpt@dest.example'], wireBody('Subject: again\n\nx\n'))).end?.code, 250);
  await retry.quit();
  assert.equal(backend.messages.length, 1);
  // From B's log, not a stopwatch: a loaded machine cannot make a hold look like none or the reverse.
  const line = await b.serve.waitLog((l) => l.msg === 'session' && l.client === '127.63.0.1');
  assert.equal(heldSeconds(line), 0, `greeted at once by the other MX: ${JSON.stringify(line)}`);
});

test('a pass counts for the network across the fleet: a pool survives on one MX, its neighbour is relayed by another after the pause, not before', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'redis-server')) return;
  const { mx, backend } = await startFleet(t, {
    firstContact: { enabled: true, profile: 'first-contact', minRetryDelay: 5 },
    allowlistCache: { network: { enabled: true } },
  });
  const [a, b, c] = mx as [Mx, Mx, Mx];
  const held = await SmtpClient.open({ port: a.port, localAddress: '127.67.0.1' });
  await held.command('EHLO pool.example');
  const first = await held.send('sender@fleet.example', ['rcpt@dest.example'], wireBody('x\n'));
  await held.quit();
  assert.equal((first.end ?? first.data ?? first.rcpt[0])?.code, 451, JSON.stringify(first));
  // Within the pause a neighbour is a first contact like any other: held, told 451, nothing relayed.
  const early = await SmtpClient.open({ port: b.port, localAddress: '127.67.0.2' });
  await early.command('EHLO pool.example');
  const tooSoon = await early.send('sender@fleet.example', ['rcpt@dest.example'], wireBody('x\n'));
  await early.quit();
  assert.equal((tooSoon.end ?? tooSoon.data ?? tooSoon.rcpt[0])?.code, 451, JSON.stringify(tooSoon));
  assert.equal(backend.messages.length, 0);
  await sleep(5100);
  // After it, another neighbour on a third MX: relayed on its first connection.
  assert.equal(await sendOne(c.port, '127.67.0.3'), 250);
  assert.equal(backend.messages.length, 1);
  assert.equal(backend.messages[0]?.clientAddress, '127.67.0.3');
});

test('Redis stopped mid-run: sessions go on from memory and the fallback is counted; Redis back: the proxies use it again', { timeout: 60_000 }, async (t) => {
  if (!requireTool(t, 'redis-server')) return;
  const { mx, backend, redis } = await startFleet(t, {}, 2);
  const [a, b] = mx as [Mx, Mx];
  assert.equal(await sendOne(a.port, '127.64.0.1'), 250);
  await redis.stop();
  for (let i = 0; i < 4; i++) assert.equal(await sendOne(mx[i % 2]!.port, `127.64.1.${i + 1}`), 250, 'mail flows without Redis');
  const during = await scrape(a.metricsPort);
  assert.ok(during.sum('smtp_tarpit_store_fallbacks_total') > 0, 'fallbacks counted');
  const ready = (await (await fetch(`http://127.0.0.1:${a.metricsPort}/readyz`)).json()) as Record<string, unknown>;
  assert.equal(ready.ready, true, 'still ready: mail flow first');
  assert.match(JSON.stringify(ready), /degraded|fallback/i, `readyz says the store is degraded: ${JSON.stringify(ready)}`);
  await redis.start();
  // Reconnects with backoff (at most 5 s between tries).
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = await scrape(b.metricsPort);
    if (m.sum('smtp_tarpit_store_up') === 1) break;
    if (Date.now() > deadline) throw new Error('the proxy did not reconnect to Redis within 10 s');
    await sleep(200);
  }
  const before = (await scrape(b.metricsPort)).sum('smtp_tarpit_store_operations_total', { store: 'redis', result: 'ok' });
  assert.equal(await sendOne(b.port, '127.64.2.1'), 250);
  const after = (await scrape(b.metricsPort)).sum('smtp_tarpit_store_operations_total', { store: 'redis', result: 'ok' });
  assert.ok(after > before, 'the session went through Redis again');
  assert.equal(backend.messages.length, 6, 'every message that got 250 arrived');
});
