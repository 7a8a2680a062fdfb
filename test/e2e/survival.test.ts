/**
 * The process survives what smtp-server alone dies of (docs/platform-notes.md): a throw in
 * a timer and a client reset inside a transaction. The proxy runs in its own
 * process so the test sees it stay up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import type { TestContext } from 'node:test';
import { createInterface } from 'node:readline';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { waitFor } from '../helpers/wait-for.js';

async function metric(port: number, name: string, label = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + (label ? `{${label}}` : '')) && !l.startsWith('#'));
  return line ? Number(line.split(' ').pop()) : 0;
}

async function forkProxy(t: TestContext, backendPort: number): Promise<{ smtp: number; metrics: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/fault-proxy.ts', String(backendPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  t.after(() => {
    child.kill('SIGKILL');
  });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`proxy exited ${code}: ${stderr}`)));
  });
  return { ...(JSON.parse(first) as { smtp: number; metrics: number }), child };
}

test('a throw in a timer and client resets mid-DATA are trapped; the forked proxy keeps serving', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const ports = await forkProxy(t, backend.port);
  const child = ports.child;

  const timer = await SmtpClient.open({ port: ports.smtp });
  await timer.command('EHLO timer.example');
  await timer.command('MAIL FROM:<timer@fault.example>');
  await timer.quit();
  // The timer fires on its own schedule in the other process: wait for it rather than for a fixed time.
  await waitFor(async () => (await metric(ports.metrics, 'smtp_tarpit_handler_errors_total', 'stage="process"')) >= 1, { everyMs: 50, what: 'the trapped timer throw' });
  assert.equal(await metric(ports.metrics, 'smtp_tarpit_handler_errors_total', 'stage="process"'), 1);

  for (let i = 0; i < 5; i++) {
    const c = await SmtpClient.open({ port: ports.smtp });
    await c.command('EHLO reset.example');
    await c.command('MAIL FROM:<a@sender.example>');
    await c.command('RCPT TO:<b@dest.example>');
    await c.command('DATA');
    c.write('Subject: half\r\n\r\nhalf a mess');
    await new Promise((r) => setTimeout(r, 20));
    c.socket.resetAndDestroy();
  }

  const ok = await SmtpClient.open({ port: ports.smtp });
  await ok.command('EHLO ok.example');
  const r = await ok.send('a@sender.example', ['b@dest.example'], wireBody('Subject: alive\n\nstill here\n'));
  assert.equal(r.end?.code, 250);
  await ok.quit();
  assert.equal(child.exitCode, null, 'the proxy process is still running');
  assert.equal(backend.messages.length, 1, 'half-sent messages never reach the backend');
});

test('memory stays bounded under abuse: 1 MB lines and 20 MB bodies over the size limit are not buffered or kept', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const ports = await forkProxy(t, backend.port);
  const rss = async () => (await metric(ports.metrics, 'smtp_tarpit_process_resident_memory_bytes')) / 1048576;
  const abuse = async () => {
    // Each its own address: 25 at once from one would meet the per-client cap.
    const lines = Array.from({ length: 20 }, async (_, i) => {
      const c = await SmtpClient.open({ port: ports.smtp, timeout: 30_000, localAddress: `127.0.8.${i + 1}` });
      c.write(Buffer.alloc(1024 * 1024, 'A'));
      assert.equal((await c.read()).code, 421);
      c.destroy();
    });
    const bodies = Array.from({ length: 5 }, async (_, i) => {
      const c = await SmtpClient.open({ port: ports.smtp, timeout: 60_000, localAddress: `127.0.9.${i + 1}` });
      await c.command('EHLO big.example');
      const chunk = ('z'.repeat(998) + '\r\n').repeat(1024);
      const r = await c.send('a@sender.example', ['b@dest.example'], chunk.repeat(20));
      assert.equal(r.end?.code, 552, JSON.stringify(r.end));
      await c.quit();
    });
    await Promise.all([...lines, ...bodies]);
  };
  const start = await rss();
  const rounds: number[] = [];
  for (let i = 0; i < 3; i++) {
    await abuse();
    rounds.push(await rss());
  }
  t.diagnostic(`RSS ${start.toFixed(1)} MB at start, ${rounds.map((r) => r.toFixed(1)).join(' / ')} MB after each round of 20 x 1 MB lines and 5 x 20 MB oversized bodies`);
  // Each round pushes 120 MB through; holding any of it would grow RSS round after round.
  // The first round may raise the high-water mark (concurrent socket buffers); later rounds must not.
  assert.ok(rounds[2]! - rounds[0]! < 30, `RSS kept growing: ${rounds.join(', ')} MB`);
  assert.ok(rounds[0]! - start < 120, `first round grew RSS by ${(rounds[0]! - start).toFixed(1)} MB, as much as it received`);
  assert.equal(backend.messages.length, 0, 'no oversized message reached the backend');
  assert.equal(ports.child.exitCode, null);
});
