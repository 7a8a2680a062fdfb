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
import { FIRST_CONTACT_DELAY, MIN_RETRY_DELAY } from '../../scripts/demo/proxy.js';

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

interface SessionLine {
  readonly client: string;
  readonly verdict: string;
  readonly path?: string;
  readonly hangup?: string;
  readonly outcome?: string;
  readonly knownSender?: string;
  readonly passed?: string;
  readonly reasons?: string[];
  readonly messages?: Array<{ result: string }>;
}

/** A row of "What each kind of client got": the five counts, then the legitimate delay (or bots stopped) and what it heard. */
interface KindRow {
  readonly senders: number;
  readonly sessions: number;
  readonly relayed: number;
  readonly refused: number;
  readonly gaveUp: number;
  /** Seconds to delivery, one per legitimate group or min / median / max; empty for bots. */
  readonly delays: number[];
  /** For bots: [stopped, of]. */
  readonly stopped?: [number, number];
  readonly heard: string;
}

function kindRow(stdout: string, kind: string): KindRow {
  const m = new RegExp(`^ {2}${kind} +(\\d+) +(\\d+) +(\\d+) +(\\d+) +(\\d+) {3}(stopped (\\d+) of (\\d+)|\\d+\\.\\d(?: / \\d+\\.\\d)* s)(.*)$`, 'm').exec(stdout);
  assert.ok(m, `a row for ${kind}:\n${stdout}`);
  const [senders, sessions, relayed, refused, gaveUp] = m.slice(1, 6).map(Number) as [number, number, number, number, number];
  const stopped = m[7] === undefined ? undefined : ([Number(m[7]), Number(m[8])] as [number, number]);
  const delays = stopped ? [] : m[6]!.replace(' s', '').split(' / ').map(Number);
  return { senders, sessions, relayed, refused, gaveUp, delays, ...(stopped && { stopped }), heard: m[9]!.trim() };
}

test('npm run demo: bots are stopped in several held stages, every legitimate sender is delivered at its cost, and the printed figures match the proxy\'s log', async (t) => {
  const run = await runDemo(25);
  const logFile = /one JSON line per session \(\d+ here\): (\S+)/.exec(run.stdout)?.[1];
  if (logFile) t.after(() => rmSync(dirname(logFile), { recursive: true, force: true }));
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.match(run.stdout, /OK: every legitimate sender's message was delivered, the known sender's at once; no bot's was\./);
  assert.ok(logFile, run.stdout);
  // The scaled-down times are said to be so, beside the real ones.
  assert.match(run.stdout, new RegExp(`a survivor's retry is relayed from ${MIN_RETRY_DELAY} s \\(firstContact\\.minRetryDelay shipped: \\d+ s, here ÷`));

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
  assert.ok(rows.every((r) => /^(?:(?:impatient bot|blind pipeliner|early talker)(?: ×\d+)?(?:, |$))+$/.test(r[3]!)), 'only the bots of the waves hang up');

  // The table (from /metrics) agrees with the proxy's own log lines, stage by stage and verdict by verdict.
  const sessions = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"msg":"session"'))
    .map((l) => JSON.parse(l) as SessionLine);
  for (const [stage, counts] of Object.entries(perStage)) {
    verdicts.forEach((verdict, i) => {
      const logged = sessions.filter((s) => s.hangup === stage && s.verdict === verdict).length;
      assert.equal(counts[i], logged, `hang-ups in ${stage} with verdict ${verdict}: table says ${counts[i]}, log says ${logged}`);
    });
  }
  const of = (client: string) => sessions.filter((s) => s.client === client);
  const results = (client: string) => of(client).map((s) => s.outcome ?? s.messages?.[0]?.result);
  const relayedLine = (client: string) => of(client).find((s) => s.messages?.some((m) => m.result === 'relayed'));
  const hold = FIRST_CONTACT_DELAY * 5; // banner, EHLO, MAIL, one RCPT and DATA, each held

  // What legitimate mail paid, as the senders saw it. Lower bounds only: the demo's own timers, never the machine's speed.
  const patient = kindRow(run.stdout, 'patient MTA');
  assert.deepEqual([patient.senders, patient.sessions, patient.relayed, patient.refused, patient.gaveUp], [1, 2, 1, 1, 0], run.stdout);
  assert.equal(patient.heard, '451 4.7.1');
  assert.ok(patient.delays[0]! >= hold + MIN_RETRY_DELAY, `the patient MTA sat the hold out and waited out the pause: ${patient.delays[0]} s`);
  const pool = kindRow(run.stdout, 'pool MTA');
  assert.deepEqual([pool.senders, pool.sessions, pool.relayed, pool.refused, pool.gaveUp], [3, 6, 3, 3, 0], run.stdout);
  assert.equal(pool.heard, '451 4.7.1 ×3');
  assert.equal(pool.delays.length, 3, 'min / median / max');
  assert.ok(pool.delays[0]! >= hold + MIN_RETRY_DELAY && pool.delays[0]! <= pool.delays[1]! && pool.delays[1]! <= pool.delays[2]!, run.stdout);
  const known = kindRow(run.stdout, 'known sender');
  assert.deepEqual([known.senders, known.sessions, known.relayed, known.refused, known.gaveUp], [1, 1, 1, 0, 0], run.stdout);
  assert.equal(known.heard, '', 'the known sender heard no refusal');
  assert.ok(known.delays[0]! < hold, `the known sender was not held: ${known.delays[0]} s, where a hold alone takes ${hold} s`);
  const slow = kindRow(run.stdout, 'slow MTA');
  assert.deepEqual([slow.senders, slow.sessions, slow.relayed, slow.refused, slow.gaveUp], [1, 2, 1, 1, 0], run.stdout);
  assert.ok(slow.delays[0]! > pool.delays[2]!, 'the slow MTA paid its own late retry');

  // The bots: every one stopped, the instant retrier after three tries, each told 451.
  for (const kind of ['dictionary attacker', 'instant retrier', 'early talker', 'blind pipeliner', 'impatient bot']) {
    const bots = kindRow(run.stdout, kind);
    assert.ok(bots.senders > 0 && bots.relayed === 0, `${kind}: ${run.stdout}`);
    assert.deepEqual(bots.stopped, [bots.senders, bots.senders], `every ${kind} was stopped`);
  }
  const retrier = kindRow(run.stdout, 'instant retrier');
  assert.deepEqual([retrier.senders, retrier.sessions, retrier.refused], [1, 3, 3], run.stdout);
  assert.equal(retrier.heard, '451 4.7.1 ×3');
  // The dictionary attacker met the harvest check: 550 5.1.1 from the backend, then 550 5.7.1 from the proxy.
  assert.match(kindRow(run.stdout, 'dictionary attacker').heard, /550 5\.1\.1 ×\d+, 550 5\.7\.1/);

  // The log's side: who vouched for each legitimate sender's relayed session, as the demo printed it.
  const vouched = [...run.stdout.matchAll(/^ {2}(patient MTA|pool MTA|known sender|slow MTA) +(\S+) +try (\d): (.+)$/gm)];
  assert.equal(vouched.length, 6, run.stdout);
  for (const [, kind, address, tries, why] of vouched) {
    const line = relayedLine(address!);
    assert.ok(line, `a relayed session from ${address} in the log`);
    if (kind === 'known sender') {
      assert.equal(tries, '1');
      assert.equal(line.knownSender, 'knownSenders.networks', JSON.stringify(line));
      assert.deepEqual(results(address!), ['relayed'], 'one session, relayed: never held');
      assert.match(why!, /^knownSender: knownSenders\.networks/);
    } else if (kind === 'pool MTA') {
      // The retry came from the neighbour .2, relayed on its network's pass; the .1 that sat the hold out never came back.
      assert.match(address!, /\.2$/);
      assert.equal(line.passed, 'network', JSON.stringify(line));
      assert.match(why!, /^passed: network/);
      assert.deepEqual(results(address!.replace(/\.2$/, '.1')), ['survived']);
      assert.deepEqual(results(address!), ['relayed']);
    } else {
      assert.equal(tries, '2');
      assert.equal(line.passed, 'address', JSON.stringify(line));
      assert.deepEqual(results(address!), ['survived', 'relayed'], JSON.stringify(of(address!)));
    }
  }
  assert.match(run.stdout, /The backend received 6 message\(s\)/);
  assert.match(run.stdout, /from <news@partner\.example> to <alice@demo\.example>, client 127\.10\.0\.1 \(XCLIENT ADDR\)/);

  // The instant retrier: held three times, the second and third time for its early retry, never relayed.
  const retrierAddress = /The instant retrier \((\S+)\), try by try/.exec(run.stdout)?.[1];
  assert.ok(retrierAddress, run.stdout);
  const retries = of(retrierAddress);
  assert.equal(retries.length, 3, JSON.stringify(retries));
  assert.ok(retries.every((s) => s.path === 'hold' && s.messages === undefined), 'never on the relay path');
  assert.deepEqual(retries.map((s) => s.reasons?.some((r) => r.startsWith('early-retry')) ?? false), [false, true, true], JSON.stringify(retries));
  assert.equal([...run.stdout.matchAll(/^ {2}try [23]: held again: early-retry \+\d+: came back [\d.]+ s after its 451/gm)].length, 2, run.stdout);
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
