/**
 * `npm run demo`: smtp-tarpit at work in about a minute, on loopback only.
 *
 * A backend MTA (backend.ts), the real proxy in its own process (proxy.ts)
 * and a crowd (crowd.ts): a patient MTA nobody knows yet, which the
 * first-contact hold makes wait and retry once; a dictionary attacker, just
 * as patient, guessing mailboxes; and waves of bots from a blocked network
 * that talk too early, pipeline blindly or give up after a few seconds in the
 * tarpit. Every figure printed comes from the proxy's /metrics, its log, the
 * backend's count or what the clients saw. DEMO_SECONDS=25 shortens the run.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { STAGES } from '../../src/core/stage.js';
import { MAILBOXES, startBackend, type DemoBackend } from './backend.js';
import { patiently, visit, type Visit, type VisitResult } from './crowd.js';
import { freePort, scrape, startProxy, writeDemoFiles, FIRST_CONTACT_DELAY, TARPIT_DELAY, type Metrics, type RunningProxy } from './proxy.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
/** The crowd keeps coming for this long; the slowest clients need about 25 s. */
const SECONDS = Number(process.env.DEMO_SECONDS ?? 60);
if (!(SECONDS > 0)) throw new Error(`DEMO_SECONDS must be a number of seconds, not ${process.env.DEMO_SECONDS}`);
const BOTS = '127.66.0.0/16';

/** The bots of one wave: each from its own address in BOTS, patience in seconds. */
function wave(n: number): Array<{ kind: string; visit: Visit }> {
  const bot = (i: number, style: Visit['style'], patience: number): Visit => ({
    address: `127.66.${n}.${i}`,
    style,
    patience,
    from: `bot${n}.${i}@spam.example`,
    to: ['alice@demo.example'],
  });
  return [
    { kind: 'early talker', visit: bot(1, 'pregreet', 20) },
    { kind: 'blind pipeliner', visit: bot(2, 'pipeline', 20) },
    // Impatient bots: each gives up within a different held stage of the tarpit.
    ...[0.6, 1.6, 2.6, 3.6].map((stages, i) => ({ kind: 'impatient bot', visit: bot(10 + i, 'polite', stages * TARPIT_DELAY) })),
  ];
}

const PATIENT: Visit = { address: '127.10.0.1', style: 'polite', patience: 300, from: 'news@partner.example', to: ['alice@demo.example'] };
const GUESSES = ['admin', 'info', 'sales', 'support', 'webmaster', 'john', 'jane', 'office', 'contact', 'billing', 'bob'];
const HARVESTER: Visit = { address: '127.20.0.1', style: 'polite', patience: 300, from: 'list@harvest.example', to: GUESSES.map((u) => `${u}@demo.example`) };

interface Outcome {
  readonly kind: string;
  readonly address: string;
  readonly result: VisitResult;
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-demo-'));
  const backend = await startBackend();
  const ports = { listen: await freePort(), backend: backend.port, metrics: await freePort() };
  const files = writeDemoFiles(ROOT, dir, ports, [BOTS]);
  let proxy: RunningProxy | undefined;
  let stopping: Promise<void> | undefined;
  const stopAll = () => (stopping ??= (async () => {
    await proxy?.stop();
    await backend.close();
  })());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.log(`\n${signal}: stopping the proxy and the backend; the log so far is in ${files.log}`);
      void stopAll().finally(() => process.exit(130));
    });
  }
  try {
    proxy = await startProxy(ROOT, files, ports.metrics);
    console.log(`smtp-tarpit on 127.0.0.1:${ports.listen}, backend MTA on 127.0.0.1:${ports.backend}, metrics on ${proxy.metricsUrl}/metrics`);
    console.log(`first contact holds ${FIRST_CONTACT_DELAY} s before each reply, the tarpit ${TARPIT_DELAY} s; bots come from ${BOTS} (block.cidr); ${SECONDS} s`);
    console.log(`the backend knows ${MAILBOXES.join(', ')} and refuses other recipients with 550 5.1.1\n`);
    const outcomes = await runCrowd(ports.listen, proxy.metricsUrl, backend);
    const metrics = await scrape(proxy.metricsUrl);
    const stopped = await proxy.stop();
    return report(outcomes, proxy.metricsUrl, metrics, backend, files, stopped);
  } finally {
    await stopAll();
  }
}

async function runCrowd(port: number, metricsUrl: string, backend: DemoBackend): Promise<Outcome[]> {
  const outcomes: Outcome[] = [];
  const running: Array<Promise<void>> = [];
  const launch = (kind: string, v: Visit, run: Promise<VisitResult[]>) =>
    running.push(run.then((results) => void outcomes.push(...results.map((result) => ({ kind, address: v.address, result })))));

  launch('patient MTA', PATIENT, patiently(port, PATIENT, PATIENT));
  // It sits the first-contact hold out with one guess (each RCPT is held), then comes back with its list.
  launch('dictionary attacker', HARVESTER, patiently(port, { ...HARVESTER, to: HARVESTER.to.slice(0, 1) }, HARVESTER));
  const started = Date.now();
  const elapsed = () => (Date.now() - started) / 1000;
  const longest = Math.max(...wave(0).map((b) => b.visit.patience));
  // A new wave every 10 s while its slowest bot can still give up before the end.
  for (let n = 0; n === 0 || elapsed() + 10 + longest <= SECONDS; n++) {
    if (n > 0) await live(10, elapsed, metricsUrl, backend);
    for (const bot of wave(n)) launch(bot.kind, bot.visit, visit(port, bot.visit).then((r) => [r]));
  }
  while (elapsed() < SECONDS) await live(Math.min(5, SECONDS - elapsed()), elapsed, metricsUrl, backend);
  await Promise.all(running); // every client has bounded patience
  return outcomes;
}

/** Waits `seconds`, printing the proxy's own view every 5 s. */
async function live(seconds: number, elapsed: () => number, metricsUrl: string, backend: DemoBackend): Promise<void> {
  const until = Date.now() + seconds * 1000;
  while (Date.now() < until) {
    await new Promise((r) => setTimeout(r, Math.min(5000, until - Date.now())));
    const m = await scrape(metricsUrl);
    const held = m.sum('smtp_tarpit_connections_active', { state: 'held' });
    console.log(
      `[${elapsed().toFixed(0).padStart(3)} s] held now ${held}, relayed ${m.sum('smtp_tarpit_messages_total', { result: 'relayed' })}` +
        ` (backend has ${backend.delivered.length}), hang-ups so far ${m.sum('smtp_tarpit_hangups_total')}`,
    );
  }
}

interface SessionLine {
  readonly client?: string;
  readonly verdict?: string;
  readonly hangup?: string;
}

/** The proxy's per-session log lines (pino JSON on its stdout). */
function sessionLines(log: string): Array<{ text: string; line: SessionLine }> {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((text) => text.includes('"msg":"session"'))
    .map((text) => ({ text, line: JSON.parse(text) as SessionLine }));
}

/** "a ×2, b" */
function tally(items: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(item, (counts.get(item) ?? 0) + 1);
  return [...counts].map(([item, n]) => (n > 1 ? `${item} ×${n}` : item)).join(', ');
}

function report(outcomes: Outcome[], metricsUrl: string, m: Metrics, backend: DemoBackend, files: { log: string; policies: string }, proxyExit: number | null): number {
  const kindOf = new Map(outcomes.map((o) => [o.address, o.kind]));
  const sessions = sessionLines(files.log);
  const HANGUPS = 'smtp_tarpit_hangups_total';
  const verdicts = m.values(HANGUPS, 'verdict').sort();
  console.log(`\nWhere clients hung up: ${HANGUPS}{stage,verdict} from /metrics, and who they were (from the log)\n`);
  console.log(`  ${'stage'.padEnd(8)}${verdicts.map((v) => v.padStart(8)).join('')}   who`);
  for (const stage of STAGES.filter((stage) => m.sum(HANGUPS, { stage }) > 0)) {
    const who = sessions.filter((s) => s.line.hangup === stage).map((s) => kindOf.get(s.line.client ?? '') ?? String(s.line.client));
    console.log(`  ${stage.padEnd(8)}${verdicts.map((verdict) => String(m.sum(HANGUPS, { stage, verdict })).padStart(8)).join('')}   ${tally(who)}`);
  }
  console.log('\nTime held on purpose (smtp_tarpit_held_seconds), by final verdict:\n');
  for (const verdict of m.values('smtp_tarpit_held_seconds_count', 'verdict').sort()) {
    const n = m.sum('smtp_tarpit_held_seconds_count', { verdict });
    const sum = m.sum('smtp_tarpit_held_seconds_sum', { verdict });
    console.log(`  ${verdict.padEnd(8)} ${String(n).padStart(3)} sessions, ${sum.toFixed(1).padStart(6)} s in all, ${(sum / n).toFixed(1)} s each`);
  }

  console.log('  (pass: first contacts, held once before they may deliver; tarpit: held, never relayed; reject: refused at RCPT; drop: 421 and closed)');

  console.log('\nWhat each kind of client got, as it saw it:\n');
  for (const kind of [...new Set(outcomes.map((o) => o.kind))]) {
    const mine = outcomes.filter((o) => o.kind === kind);
    const count = (ending: string) => mine.filter((o) => o.result.ending === ending).length;
    const refusals = mine.flatMap((o) => o.result.replies).filter((r) => r >= '4');
    const codes = tally(refusals.map((r) => /^\d{3}( \d\.\d{1,3}\.\d{1,3})?/.exec(r)?.[0] ?? r));
    console.log(`  ${kind.padEnd(20)} ${String(mine.length).padStart(2)} sessions: relayed ${count('relayed')}, refused ${count('refused')}, gave up ${count('gave up')}${codes ? `; heard ${codes}` : ''}`);
  }
  const heard = new Map(outcomes.flatMap((o) => o.result.replies).filter((r) => r >= '4').map((r) => [r.slice(0, 9), r]));
  if (heard.size > 0) console.log(`\n  The refusals' text:\n${[...heard.values()].map((r) => `    ${r}`).join('\n')}`);

  console.log(`\nThe backend received ${backend.delivered.length} message(s) and refused ${backend.unknownRecipients()} unknown recipient(s) with 550 5.1.1:`);
  for (const d of backend.delivered) console.log(`  from <${d.from}> to ${d.to.map((t) => `<${t}>`).join(', ')}, client ${d.client} (XCLIENT ADDR)`);

  const example = sessions.find((s) => s.line.hangup !== undefined) ?? sessions[0];
  const cli = relative(process.cwd(), join(ROOT, 'src/cli/main.ts'));
  console.log('\nWhere to look next:');
  console.log(`  the proxy's log, one JSON line per session (${sessions.length} here): ${files.log}`);
  if (example) console.log(`    e.g. ${example.text}`);
  console.log(`  the policy it ran (the shipped one, shorter delays; bots in block.cidr): ${files.policies}`);
  console.log(`  why a bot was held: node --import tsx ${cli} explain --ip ${wave(0)[2]?.visit.address ?? ''} --policies ${files.policies}`);
  console.log(`  /metrics: ${metricsUrl}/metrics while the demo ran (curl it from another terminal next time); a deployed proxy serves it on metrics.listen, 127.0.0.1:9325 by default`);

  const failures: string[] = [];
  if (!backend.delivered.some((d) => d.from === PATIENT.from)) {
    const heardByPatient = outcomes.filter((o) => o.kind === 'patient MTA').map((o) => o.result.replies.at(-1) ?? o.result.ending);
    failures.push(`the patient MTA's message never reached the backend (it heard: ${heardByPatient.join(' / ')})`);
  }
  const leaked = backend.delivered.filter((d) => d.from !== PATIENT.from);
  if (leaked.length > 0) failures.push(`bots got ${leaked.length} message(s) through: ${leaked.map((d) => d.from).join(', ')}`);
  if (proxyExit !== 0) failures.push(`the proxy exited with ${String(proxyExit)} on SIGTERM`);
  console.log(failures.length === 0 ? '\nOK: the patient MTA\'s message was delivered; no bot\'s was.' : `\nFAILED: ${failures.join('; ')}`);
  return failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
