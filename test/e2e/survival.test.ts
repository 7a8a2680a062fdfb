/**
 * The process survives what smtp-server alone dies of (NOTES.md): a throw in
 * a timer and a client reset inside a transaction. The proxy runs in its own
 * process so the test sees it stay up.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';

async function metric(port: number, name: string, label = ''): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + (label ? `{${label}}` : '')) && !l.startsWith('#'));
  return line ? Number(line.split(' ').pop()) : 0;
}

test('a throw in a timer and client resets mid-DATA are trapped; the forked proxy keeps serving', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/fault-proxy.ts', String(backend.port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  t.after(() => {
    child.kill('SIGKILL');
  });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`proxy exited ${code}: ${stderr}`)));
  });
  const ports = JSON.parse(first) as { smtp: number; metrics: number };

  const timer = await SmtpClient.open({ port: ports.smtp });
  await timer.command('EHLO timer.example');
  await timer.command('MAIL FROM:<timer@fault.example>');
  await timer.quit();
  await new Promise((r) => setTimeout(r, 100));
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
