/**
 * `smtp-tarpit status` (issue 5 item 6) against a real proxy over real
 * sockets: clients held in the tarpit, one that hangs up at a known stage and
 * one relay session in progress; the command, run as a separate process like
 * an admin would, must print exactly those figures, and `--json` the same as
 * data. An unreachable listener exits 2 with a one-line reason.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readStatus, renderStatus, type Status } from '../../src/cli/status.js';
import { policyDir } from '../helpers/policy-dir.js';
import { scrape } from '../helpers/scrape.js';
import { SmtpClient } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy, sessionOf, type RunningProxy } from '../helpers/with-proxy.js';
import { PATIENCE_MS } from '../helpers/wait-for.js';
import { ROOT, freePort } from './serve-process.js';


interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function status(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'status', ...args], { cwd: ROOT, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Waits until the proxy's own gauges show what the test did (the front hands clients over asynchronously). */
async function until(p: RunningProxy, what: string, ok: (s: Awaited<ReturnType<typeof scrape>>) => boolean): Promise<void> {
  const deadline = Date.now() + PATIENCE_MS;
  for (;;) {
    if (ok(await scrape(p.metricsPort))) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The row of `stage` in the printed stage table, as numbers: held, relaying, hang-ups, then one per verdict column. */
function stageRow(stdout: string, stage: string): number[] {
  const line = stdout.split('\n').find((l) => l.trimStart().startsWith(`${stage} `));
  assert.ok(line, `no "${stage}" row in:\n${stdout}`);
  return line.trim().split(/\s+/).slice(1).map(Number);
}

test('status prints what the proxy holds now: held clients by stage and profile, a hang-up at its stage, a relay session; --json says the same', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    allow: ['127.0.0.1'],
    block: ['127.0.60.0/24'],
    policy: {
      firstContact: { enabled: true, profile: 'first-contact' },
      profiles: {
        // Blocked clients sit before the banner for the whole test.
        tarpit: { delays: { banner: 30, helo: 30, mail: 30, rcpt: 30, data: 30 } },
        // First contacts get the banner at once and wait at EHLO.
        'first-contact': { delays: { banner: 0, helo: 30, mail: 30, rcpt: 30, data: 30 }, end: 'allowlist' },
      },
    },
  });
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies, tarpit: { maxHeld: 40 } } }, async (p) => {
    const clients: SmtpClient[] = [];
    t.after(() => clients.forEach((c) => c.destroy()));

    // Three blocked clients held at connect with the tarpit profile.
    for (const address of ['127.0.60.1', '127.0.60.2', '127.0.60.3']) clients.push(await SmtpClient.connect({ port: p.port, localAddress: address }));
    // Two first contacts: banner, then EHLO, which is held; one of them hangs up there.
    for (const address of ['127.0.70.1', '127.0.70.2']) {
      const c = await SmtpClient.open({ port: p.port, localAddress: address });
      c.write('EHLO first.example\r\n');
      clients.push(c);
    }
    await until(p, 'two clients held at helo', (s) => s.sum('smtp_tarpit_sessions_stage', { path: 'held', stage: 'helo' }) === 2);
    clients.pop()!.destroy();
    const gone = await sessionOf(p, '127.0.70.2');
    assert.equal(gone.hangup, 'helo');
    // One allow-listed client relaying, in the middle of a transaction.
    const clean = await SmtpClient.open({ port: p.port, localAddress: '127.0.0.1' });
    clients.push(clean);
    assert.equal((await clean.command('EHLO clean.example')).code, 250);
    assert.equal((await clean.command('MAIL FROM:<a@clean.example>')).code, 250);
    await until(p, 'the picture to settle', (s) => s.sum('smtp_tarpit_connections_active', { state: 'held' }) === 4 && s.sum('smtp_tarpit_connections_active', { state: 'relaying' }) === 1);

    const target = `127.0.0.1:${p.metricsPort}`;
    const [text, json] = await Promise.all([status('--metrics', target), status('--metrics', target, '--json')]);

    assert.equal(text.code, 0, text.stderr);
    const out = text.stdout;
    assert.match(out, new RegExp(`^smtp-tarpit +http://${target.replace(/\./g, '\\.')}: up, ready$`, 'm'));
    assert.match(out, /^connections +vetting 0, held 4, relaying 1$/m);
    assert.match(out, /^held by profile +tarpit 3, first-contact 1$/m);
    assert.match(out, /^workers +1 \(single process\)$/m);
    assert.match(out, /^policy reload +ok, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(\d+ s ago\)$/m);
    assert.match(out, /^backend +up; pool \d+ idle, 1 busy, \d+ connecting \(at most 10\)$/m);
    // stage: held, relaying, hang-ups, then the verdict columns (only pass has hang-ups here).
    assert.deepEqual(stageRow(out, 'connect'), [3, 0, 0, 0]);
    assert.deepEqual(stageRow(out, 'helo'), [1, 0, 1, 1]);
    assert.deepEqual(stageRow(out, 'mail'), [0, 1, 0, 0]);
    assert.deepEqual(stageRow(out, 'total'), [4, 1, 1, 1]);
    assert.match(out, /^ +stage +held +relaying +hang-ups +pass$/m);
    assert.match(out, /^ +held +40 +4 +10% +0$/m);
    assert.match(out, /^ +memory +off +\d+ MiB +- +0$/m);
    for (const line of out.split('\n')) assert.ok(line.length <= 80, `longer than 80 columns: ${line}`);

    assert.equal(json.code, 0, json.stderr);
    const data = JSON.parse(json.stdout) as Status;
    assert.equal(data.ready, true);
    assert.deepEqual(data.connections, { vetting: 0, held: 4, relaying: 1 });
    assert.deepEqual(data.sessions.held, { connect: 3, helo: 1, mail: 0, rcpt: 0, data: 0, body: 0, relay: 0, quit: 0 });
    assert.deepEqual(data.sessions.relay, { connect: 0, helo: 0, mail: 1, rcpt: 0, data: 0, body: 0, relay: 0, quit: 0 });
    assert.deepEqual(data.heldByProfile, { tarpit: 3, 'first-contact': 1 });
    assert.deepEqual(data.hangups, { total: 1, byStage: { helo: { total: 1, byVerdict: { pass: 1 } } } });
    assert.equal(data.backend.up, true);
    assert.equal(data.backend.pool.busy, 1);
    assert.equal(data.workers, undefined);
    assert.equal(data.policyReload?.ok, true);
    assert.ok(Math.abs(Date.parse(data.policyReload.at) - Date.now()) < 60_000, data.policyReload.at);
    assert.deepEqual(
      data.caps.map((c) => [c.cap, c.limit, c.used, c.refused]),
      [
        ['held', 40, 4, 0],
        ['per_client', 50, undefined, 0],
        ['per_group', 200, undefined, 0],
        ['memory', 0, data.caps[3]?.used, 0],
      ],
    );
    assert.ok((data.caps[3]?.used ?? 0) > 1_000_000, 'memory: the process RSS in bytes');
    await clean.quit();
  });
});

test('status of a proxy whose backend is down prints the page, says why it is not ready and exits 1', async () => {
  const port = await freePort();
  await withProxy({ backendPort: port, metrics: true }, async (p) => {
    const run = await status('--metrics', `127.0.0.1:${p.metricsPort}`);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stdout, /^smtp-tarpit +http:\/\/127\.0\.0\.1:\d+: up, NOT READY: .+$/m);
    assert.match(run.stdout, /^backend +DOWN; /m);
    assert.match(run.stderr, /^smtp-tarpit status: not ready: .+/);
  });
});


test('status against a listener that is not there exits 2 with a one-line reason on stderr', async () => {
  const port = await freePort();
  const run = await status('--metrics', `127.0.0.1:${port}`);
  assert.equal(run.code, 2);
  assert.equal(run.stdout, '');
  const lines = run.stderr.trim().split('\n');
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0]!, new RegExp(`cannot reach the metrics listener at http://127\\.0\\.0\\.1:${port}/metrics: connect ECONNREFUSED`));
});

test('status with a configuration whose metrics listener is off exits 2 and says so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'status-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'site.yaml');
  writeFileSync(file, 'metrics:\n  listen: null\n');
  const run = await status('--config', file);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /turns the metrics listener off/);
});

test('a listener that accepts but never answers is given up after the timeout, with the reason', async (t) => {
  const silent = createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const started = Date.now();
  await assert.rejects(readStatus({ host: '127.0.0.1', port }, 300), /cannot reach the metrics listener at http:\/\/127\.0\.0\.1:\d+\/(metrics|readyz): no answer within 0\.3 s/);
  // The message names the 0.3 s that fired; this only rules out a wait for something much longer.
  assert.ok(Date.now() - started < 10_000);
});

test('a failed policy reload shows as FAILED with its time; the next good one as ok again', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t);
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    const endpoint = { host: '127.0.0.1', port: p.metricsPort! };
    const started = (await readStatus(endpoint)).policyReload;
    assert.equal(started?.ok, true, 'the load at start counts');
    const good = readFileSync(join(policies, 'policy.yaml'), 'utf8');
    writeFileSync(join(policies, 'policy.yaml'), 'verdicts: [not, a, map]\n');
    assert.equal(p.proxy.policy.reload('api').ok, false);
    const failed = await readStatus(endpoint);
    assert.equal(failed.policyReload?.ok, false);
    assert.ok(Date.parse(failed.policyReload.at) >= Date.parse(started.at));
    assert.match(renderStatus(failed), /^policy reload +FAILED, .* UTC \(\d+ s ago\): the previous policy stays in force$/m);
    writeFileSync(join(policies, 'policy.yaml'), good);
    assert.equal(p.proxy.policy.reload('api').ok, true);
    assert.equal((await readStatus(endpoint)).policyReload?.ok, true);
  });
});
