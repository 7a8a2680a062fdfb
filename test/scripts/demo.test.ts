/**
 * `npm run demo` (scripts/demo/demo.ts), run as a newcomer would, shortened
 * to 25 s: the real proxy process, its backend and the crowd over loopback.
 * The figures it prints are checked against the proxy's own log, which the
 * demo leaves in its temp dir; Ctrl-C stops everything it started.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const DEMO = join(ROOT, 'scripts/demo/demo.ts');

interface Run {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the demo; `interrupt(stdout)` returning true sends it SIGINT once. */
function runDemo(seconds: number, interrupt?: (stdout: string) => boolean): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', DEMO], { cwd: ROOT, env: { ...process.env, DEMO_SECONDS: String(seconds) } });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      if (interrupt && !interrupted && interrupt(stdout)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const guard = setTimeout(() => child.kill('SIGKILL'), (seconds + 60) * 1000);
    child.once('close', (code, signal) => {
      clearTimeout(guard);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(false)));
    s.once('error', () => resolve(true));
  });
}

test('npm run demo: bots hang up in several held stages, the patient MTA is delivered after its retry, and the printed figures match the proxy\'s log', async (t) => {
  const run = await runDemo(25);
  const logFile = /one JSON line per session \(\d+ here\): (\S+)/.exec(run.stdout)?.[1];
  if (logFile) t.after(() => rmSync(dirname(logFile), { recursive: true, force: true }));
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /OK: the patient MTA's message was delivered; no bot's was\./);
  assert.ok(logFile, run.stdout);

  // The hang-up table: one row per stage, a count per verdict, then who.
  const header = /^ {2}stage((?: +\w+)+) {3}who$/m.exec(run.stdout);
  assert.ok(header, run.stdout);
  const verdicts = header[1]!.trim().split(/ +/);
  const rows = [...run.stdout.matchAll(/^ {2}(connect|helo|mail|rcpt|data|body|relay|quit)((?: +\d+)+) {3}(.+)$/gm)];
  const perStage = Object.fromEntries(rows.map((r) => [r[1]!, r[2]!.trim().split(/ +/).map(Number)]));
  for (const stage of ['connect', 'helo', 'mail', 'rcpt']) {
    const total = (perStage[stage] ?? []).reduce((a, b) => a + b, 0);
    assert.ok(total > 0, `someone hung up in ${stage}: ${run.stdout}`);
  }
  assert.ok(rows.every((r) => /impatient bot|blind pipeliner|early talker/.test(r[3]!)), 'only bots hang up');
  assert.ok(!rows.some((r) => /patient MTA|dictionary/.test(r[3]!.replace('impatient', ''))), 'the patient senders never hung up');

  // The table (from /metrics) agrees with the proxy's own log lines, stage by stage and verdict by verdict.
  const sessions = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"msg":"session"'))
    .map((l) => JSON.parse(l) as { client: string; verdict: string; hangup?: string; outcome?: string; messages?: Array<{ result: string }> });
  for (const [stage, counts] of Object.entries(perStage)) {
    verdicts.forEach((verdict, i) => {
      const logged = sessions.filter((s) => s.hangup === stage && s.verdict === verdict).length;
      assert.equal(counts[i], logged, `hang-ups in ${stage} with verdict ${verdict}: table says ${counts[i]}, log says ${logged}`);
    });
  }

  // The patient MTA: held on first contact, told 451 4.7.1, relayed on its retry, seen by the backend under its own address.
  assert.match(run.stdout, /patient MTA +2 sessions: relayed 1, refused 1, gave up 0; heard 451 4\.7\.1/);
  assert.match(run.stdout, /from <news@partner\.example> to <alice@demo\.example>, client 127\.10\.0\.1 \(XCLIENT ADDR\)/);
  const patient = sessions.filter((s) => s.client === '127.10.0.1');
  assert.deepEqual(
    patient.map((s) => s.outcome ?? s.messages?.[0]?.result),
    ['survived', 'relayed'],
    JSON.stringify(patient),
  );
  assert.match(run.stdout, /The backend received 1 message\(s\)/);
  // The dictionary attacker met the harvest check: 550 5.1.1 from the backend, then 550 5.7.1 from the proxy.
  assert.match(run.stdout, /dictionary attacker .*550 5\.1\.1 ×\d+, 550 5\.7\.1/);
  assert.match(run.stdout, /explain --ip 127\.66\.\d+\.\d+ --policies \S+/);
});

test('Ctrl-C stops the demo and everything it started', async (t) => {
  const run = await runDemo(60, (stdout) => stdout.includes('[  5 s]'));
  const listen = /smtp-tarpit on 127\.0\.0\.1:(\d+), backend MTA on 127\.0\.0\.1:(\d+), metrics on http:\/\/127\.0\.0\.1:(\d+)/.exec(run.stdout);
  const logFile = /the log so far is in (\S+)/.exec(run.stdout)?.[1];
  if (logFile) t.after(() => rmSync(dirname(logFile), { recursive: true, force: true }));
  assert.equal(run.code, 130, `${run.stdout}\n${run.stderr}`);
  assert.ok(listen && logFile, run.stdout);
  for (const port of listen.slice(1, 4)) assert.ok(await refused(Number(port)), `nothing listens on ${port} any more`);
  assert.match(readFileSync(logFile, 'utf8'), /"msg":"smtp-tarpit stopped"/, 'the proxy shut down cleanly');
});
