/**
 * Hostile load cannot lock clean clients out (issue 12): a flood from one
 * address or from thousands, past every cap, while a clean client keeps
 * relaying a message every 100 ms. Before the fix, a refused connection kept
 * its place in maxConnections until it closed (up to 5 s), so the flood's
 * refusals alone filled the total cap and clean clients got 421.
 *
 * The flood runs in its own process (scripts/flood.ts), never reads, and
 * keeps its sockets open until the test ends. Nothing here depends on how
 * fast the machine is: the clean client relays until the flood has been
 * fully refused, and each of its sessions must succeed whenever it runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { policyDir } from '../helpers/policy-dir.js';
import { scrape } from '../helpers/scrape.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { waitFor } from '../helpers/wait-for.js';
import type { TestContext } from '../helpers/require-tool.js';
import { withProxy, type RunningProxy } from '../helpers/with-proxy.js';

const FLOOD = fileURLToPath(new URL('../../scripts/flood.ts', import.meta.url));
const MESSAGE = wireBody('Subject: through the flood\n\nhello\n');

interface Flood {
  readonly child: ChildProcess;
  /** Resolves with the flooder's report once every connect has settled. */
  readonly done: Promise<{ count: number; connected: number; failed: number; seconds: number }>;
}

function flood(t: TestContext, port: number, args: Record<string, string | number>): Flood {
  const argv = Object.entries(args).flatMap(([k, v]) => [`--${k}`, String(v)]);
  const child = spawn(process.execPath, ['--import', 'tsx', FLOOD, '--port', String(port), ...argv], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => {
    child.stdin?.end();
    child.kill();
  });
  const done = (async () => {
    let out = '';
    child.stdout.setEncoding('utf8');
    for await (const chunk of child.stdout) {
      out += chunk as string;
      if (out.includes('\n')) return JSON.parse(out.split('\n')[0]!) as Awaited<Flood['done']>;
    }
    throw new Error(`the flooder exited without a report (${child.exitCode})`);
  })();
  return { child, done };
}

/** One clean session: banner, EHLO, one message relayed, QUIT; every reply must be the positive one. */
async function relayOnce(p: RunningProxy, localAddress: string): Promise<void> {
  const client = await SmtpClient.connect({ port: p.port, localAddress, timeout: 30_000 });
  try {
    const banner = await client.read();
    assert.equal(banner.code, 220, `banner: ${banner.lines.join(' | ')}`);
    assert.equal((await client.command('EHLO clean.example')).code, 250);
    const sent = await client.send('a@clean.example', ['b@dest.example'], MESSAGE);
    assert.equal(sent.end?.code, 250, JSON.stringify(sent));
    await client.quit();
  } finally {
    client.destroy();
  }
}

/** Relays every 100 ms until `until` settles, then a few more; returns how many sessions were relayed. */
async function relayThrough(p: RunningProxy, localAddress: string, until: Promise<unknown>): Promise<number> {
  let over = false;
  void until.finally(() => (over = true));
  let sessions = 0;
  let after = 0;
  while (!over || after < 5) {
    await relayOnce(p, localAddress);
    sessions++;
    if (over) after++;
    await new Promise((r) => setTimeout(r, 100));
  }
  return sessions;
}

/** Connections the front door counts against maxConnections right now. */
function openConnections(p: RunningProxy): number {
  return Number(p.proxy.readiness().connections);
}

async function counter(p: RunningProxy, name: string, labels: Record<string, string>): Promise<number> {
  return (await scrape(p.metricsPort)).sum(name, labels);
}

test('a one-address flood of 5,000 connects that never read: every clean session relays, refusals free their slot at once, one log line for the address', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const config = { limits: { maxConnections: 300, maxConnectionsPerClient: 20 }, tarpit: { maxHeld: 200 } };
  await withProxy({ backendPort: backend.port, metrics: true, config }, async (p) => {
    const f = flood(t, p.port, { from: '127.0.0.9', count: 5000 });
    const relayed = await relayThrough(p, '127.0.9.1', f.done);
    const report = await f.done;
    assert.equal(report.connected + report.failed, 5000);
    assert.ok(relayed >= 5);
    assert.equal(backend.messages.filter((m) => m.clientAddress === '127.0.9.1').length, relayed, 'every clean session was relayed');

    const refused = await counter(p, 'smtp_tarpit_connections_total', { result: 'refused_per_client' });
    assert.ok(refused >= report.connected - 20 - 1, `refused ${refused} of ${report.connected}`);
    // The 20 the flood may keep, and the clean client's: the refused ones hold nothing.
    assert.ok(openConnections(p) <= 21, `open after the flood: ${openConnections(p)}`);
    const lines = p.logs.filter((l) => l.msg === 'connection refused' && l.client === '127.0.0.9');
    assert.equal(lines.length, 1, 'one line per address per window, not one per refusal');
    assert.equal(lines[0]!.refused, 'per_client');
    assert.equal(p.logs.filter((l) => l.msg === 'connection refused' && l.client === '127.0.9.1').length, 0);
  });
});

test('a flood from 2,000 addresses in many /24s, past tarpit.maxHeld: the tarpit fills, the rest is refused, clean clients still relay', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  // Long holds: the flood's held clients stay for the whole test.
  const policies = policyDir(t, {
    block: ['127.60.0.0/16'],
    policy: { profiles: { tarpit: { delays: { banner: 120, helo: 5, mail: 5, rcpt: 5, data: 5 } } } },
  });
  const config = { policies, limits: { maxConnections: 400, maxConnectionsPerClient: 5 }, tarpit: { maxHeld: 300, maxHeldPerGroup: 100 } };
  await withProxy({ backendPort: backend.port, metrics: true, config }, async (p) => {
    const f = flood(t, p.port, { from: '127.60.0.1', addresses: 2000, count: 2000 });
    const relayed = await relayThrough(p, '127.0.9.2', f.done);
    await f.done;
    assert.equal(backend.messages.filter((m) => m.clientAddress === '127.0.9.2').length, relayed);
    assert.equal(await counter(p, 'smtp_tarpit_connections_active', { state: 'held' }), 300, 'the tarpit is full');
    const full = await counter(p, 'smtp_tarpit_tarpit_refused_total', {});
    assert.ok(full > 0, 'clients past maxHeld were refused');
    // A refused client left nothing open behind it.
    assert.ok(openConnections(p) <= 301, `open: ${openConnections(p)}`);
  });
});

test('an allow-listed partner may open maxConnectionsPerAllowedClient sessions at once; any other address stops at maxConnectionsPerClient', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, { allow: ['127.0.8.1'] });
  const config = { policies, limits: { maxConnectionsPerClient: 3, maxConnectionsPerAllowedClient: 6 } };
  await withProxy({ backendPort: backend.port, config }, async (p) => {
    const partner: SmtpClient[] = [];
    for (let i = 0; i < 6; i++) partner.push(await SmtpClient.open({ port: p.port, localAddress: '127.0.8.1' }));
    await assertRefused(p, '127.0.8.1', '4.7.0');
    const other: SmtpClient[] = [];
    for (let i = 0; i < 3; i++) other.push(await SmtpClient.open({ port: p.port, localAddress: '127.0.8.2' }));
    await assertRefused(p, '127.0.8.2', '4.7.0');
    for (const c of [...partner, ...other]) c.destroy();
  });
});

test('the clean reserve: past maxConnections minus cleanReserve a client the policy would hold gets 421 4.3.2, a clean one is still relayed', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    block: ['127.61.0.0/16'],
    policy: { profiles: { tarpit: { delays: { banner: 120, helo: 5, mail: 5, rcpt: 5, data: 5 } } } },
  });
  // 10 slots, the last 4 for clients we relay; the tarpit itself would take 9.
  const config = { policies, limits: { maxConnections: 10, cleanReserve: 0.4 }, tarpit: { maxHeld: 9 } };
  await withProxy({ backendPort: backend.port, metrics: true, config }, async (p) => {
    const held: SmtpClient[] = [];
    for (let i = 1; i <= 6; i++) {
      held.push(await SmtpClient.connect({ port: p.port, localAddress: `127.61.${i}.1` }));
      await waitFor(async () => (await counter(p, 'smtp_tarpit_connections_active', { state: 'held' })) === i, { what: `client ${i} held`, everyMs: 20 });
    }
    await assertRefused(p, '127.61.7.1', '4.3.2');
    assert.equal(await counter(p, 'smtp_tarpit_limit_hits_total', { limit: 'reserve' }), 1);
    const line = p.sessionLogs().find((l) => l.client === '127.61.7.1');
    assert.equal(line?.refused, 'reserve');
    // Four clean clients at once fit in the reserve, and each relays.
    const clean = await Promise.all([1, 2, 3, 4].map((i) => SmtpClient.open({ port: p.port, localAddress: `127.0.7.${i}` })));
    for (const c of clean) {
      assert.equal((await c.command('EHLO clean.example')).code, 250);
      assert.equal((await c.send('a@clean.example', ['b@dest.example'], MESSAGE)).end?.code, 250);
    }
    for (const c of [...held, ...clean]) c.destroy();
  });
});

async function assertRefused(p: RunningProxy, localAddress: string, enhanced: string): Promise<void> {
  const client = await SmtpClient.connect({ port: p.port, localAddress });
  const reply = await client.read();
  assert.equal(reply.code, 421, reply.lines.join(' | '));
  assert.equal(reply.enhanced, enhanced);
  await client.waitClosed(10_000);
}
