/**
 * `npm run demo`: smtp-tarpit at work in about a minute, on loopback only.
 *
 * A backend MTA (backend.ts), the real proxy in its own process (proxy.ts)
 * and a crowd (crowd.ts). Legitimate senders, MTAs that queue their message
 * and retry after a 451: one nobody knows yet, which sits the first-contact
 * hold out and retries; a big sender's pool MTAs, whose retry comes from a
 * neighbour address; a known sender, listed in known-senders.cidr; and a slow
 * MTA that retries late. Bots: a dictionary attacker, as patient as an MTA,
 * guessing mailboxes; an instant retrier that sits the hold out and comes
 * straight back; and waves of bots from a blocked network that talk too
 * early, pipeline blindly or give up after a few seconds in the tarpit.
 *
 * The closing report sets what legitimate mail paid (the time from a
 * sender's first connect to its 250) beside what the bots got. Every figure
 * printed comes from the proxy's /metrics, its log, the backend's count or
 * what the clients saw. DEMO_SECONDS=25 shortens the run.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { STAGES } from '../../src/core/stage.js';
import { MAILBOXES, startBackend, type DemoBackend } from './backend.js';
import { untilDelivered, type Delivery, type QueuedSender, type Visit, type VisitResult } from './crowd.js';
import { freePort, scrape, startProxy, writeDemoFiles, FIRST_CONTACT_DELAY, MIN_RETRY_DELAY, TARPIT_DELAY, type Metrics, type RunningProxy, type Shipped } from './proxy.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
/** The bots keep coming for this long; the run lasts until the last client is done (the instant retrier: about 45 s). */
const SECONDS = Number(process.env.DEMO_SECONDS ?? 60);
if (!(SECONDS > 0)) throw new Error(`DEMO_SECONDS must be a number of seconds, not ${process.env.DEMO_SECONDS}`);
const BOTS = '127.66.0.0/16';
const KNOWN_NETWORK = '127.50.0.0/24';

/** An MTA's retry after a 451: a little after the demo's minRetryDelay (Postfix waits minimal_backoff_time, 300 s). */
const MTA_RETRY = MIN_RETRY_DELAY + 2;
const POSTFIX_RETRY = 300;
/** The slow MTA's retry (Exim and the big providers: 10 to 30 minutes). */
const SLOW_RETRY = 30;
/** The instant retrier comes back this soon after each 451, well inside minRetryDelay, as a bot hammering does. */
const BOT_RETRY = 2;

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

/** An MTA's visit: waits for each reply as long as RFC 5321 asks, one message for alice. */
const mta = (address: string, from: string): Visit => ({ address, style: 'polite', patience: 300, from, to: ['alice@demo.example'] });
const PATIENT = mta('127.10.0.1', 'news@partner.example');
const KNOWN = mta('127.50.0.1', 'invoice@bigsender.example');
const SLOW = mta('127.11.0.1', 'digest@slow.example');

/** Legitimate senders: MTAs that queue their message and retry after a 4xx. */
const LEGITIMATE: ReadonlyArray<{ kind: string; sender: QueuedSender }> = [
  // Nobody knows it: it sits the first-contact hold out, and its retry from the same address is relayed.
  { kind: 'patient MTA', sender: { tries: [PATIENT, PATIENT], retryAfter: MTA_RETRY } },
  // A big sender's pool retries from another of its addresses: here the neighbour in the same /24,
  // relayed because its network was remembered. Three pools in three /24s: not luck.
  ...[1, 2, 3].map((n) => {
    const from = `bounce${n}@pool.example`;
    return { kind: 'pool MTA', sender: { tries: [mta(`127.30.${n}.1`, from), mta(`127.30.${n}.2`, from)], retryAfter: MTA_RETRY } };
  }),
  // In known-senders.cidr: relayed on its first connection. Were it held, it would retry like any MTA (and the demo fail).
  { kind: 'known sender', sender: { tries: [KNOWN, KNOWN], retryAfter: MTA_RETRY } },
  // Retries long after minRetryDelay.
  { kind: 'slow MTA', sender: { tries: [SLOW, SLOW], retryAfter: SLOW_RETRY } },
];

const GUESSES = ['admin', 'info', 'sales', 'support', 'webmaster', 'john', 'jane', 'office', 'contact', 'billing', 'bob'];
const HARVESTER: Visit = { address: '127.20.0.1', style: 'polite', patience: 300, from: 'list@harvest.example', to: GUESSES.map((u) => `${u}@demo.example`) };
/** It sits the first-contact hold out with one guess (each RCPT is held), then comes back with its list as an MTA would. */
const HARVEST: QueuedSender = { tries: [{ ...HARVESTER, to: HARVESTER.to.slice(0, 1) }, HARVESTER], retryAfter: MTA_RETRY };
/** Clean, not in the blocked network: it sits the hold out like an MTA, then retries the same message at once, three times in all. */
const RETRIER_VISIT = mta('127.40.0.1', 'promo@retry.example');
const RETRIER: QueuedSender = { tries: [RETRIER_VISIT, RETRIER_VISIT, RETRIER_VISIT], retryAfter: BOT_RETRY };

/** One client of the crowd and what it saw. */
interface Sent {
  readonly kind: string;
  readonly legitimate: boolean;
  readonly sender: QueuedSender;
  readonly delivery: Delivery;
}

async function main(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-demo-'));
  const backend = await startBackend();
  const ports = { listen: await freePort(), backend: backend.port, metrics: await freePort() };
  const files = writeDemoFiles(ROOT, dir, ports, { blocked: [BOTS], known: [KNOWN_NETWORK] });
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
    printScale(files.shipped);
    console.log(`bots come from ${BOTS} (block.cidr), the known sender from ${KNOWN_NETWORK} (known-senders.cidr); bots keep coming for ${SECONDS} s`);
    console.log(`the backend knows ${MAILBOXES.join(', ')} and refuses other recipients with 550 5.1.1\n`);
    const sent = await runCrowd(ports.listen, proxy.metricsUrl, backend);
    const metrics = await scrape(proxy.metricsUrl);
    const stopped = await proxy.stop();
    return report(sent, proxy.metricsUrl, metrics, backend, files, stopped);
  } finally {
    await stopAll();
  }
}

/** The demo's times beside the real ones: they are scaled down so the demo fits in a minute, and must not be taken for advice. */
function printScale(shipped: Shipped): void {
  const scaled = (demo: number, real: number, what: string) => `${demo} s (${what}: ${real} s, here ÷${Number((real / demo).toFixed(1))})`;
  console.log('times are scaled down to fit in a minute; the real ones in brackets:');
  console.log(`  first contact holds ${scaled(FIRST_CONTACT_DELAY, shipped.firstContactDelay, 'shipped')} before each reply, the tarpit ${scaled(TARPIT_DELAY, shipped.tarpitDelay, 'shipped')}`);
  console.log(`  a survivor's retry is relayed from ${scaled(MIN_RETRY_DELAY, shipped.minRetryDelay, 'firstContact.minRetryDelay shipped')} after its 451`);
  console.log(`  MTAs retry ${scaled(MTA_RETRY, POSTFIX_RETRY, 'Postfix')} after a 451, the slow MTA ${SLOW_RETRY} s (Exim, big providers: 10-30 min); the instant retrier ${BOT_RETRY} s`);
}

async function runCrowd(port: number, metricsUrl: string, backend: DemoBackend): Promise<Sent[]> {
  const started = Date.now();
  const elapsed = () => (Date.now() - started) / 1000;
  const clients: Array<Promise<Sent>> = [];
  const send = (kind: string, legitimate: boolean, sender: QueuedSender) =>
    clients.push(untilDelivered(port, sender).then((delivery) => ({ kind, legitimate, sender, delivery })));

  for (const { kind, sender } of LEGITIMATE) send(kind, true, sender);
  send('dictionary attacker', false, HARVEST);
  send('instant retrier', false, RETRIER);
  const longest = Math.max(...wave(0).map((b) => b.visit.patience));
  const waves = (async () => {
    // A new wave every 10 s while its slowest bot can still give up before SECONDS.
    for (let n = 0; n === 0 || elapsed() + 10 + longest <= SECONDS; n++) {
      if (n > 0) await sleep(10);
      for (const bot of wave(n)) send(bot.kind, false, { tries: [bot.visit], retryAfter: 0 });
    }
  })();
  // Once the waves are out, `clients` holds every client; each has bounded patience and tries.
  const everyone = waves.then(() => Promise.all(clients));
  await watch(Promise.all([everyone, sleep(SECONDS)]), elapsed, metricsUrl, backend);
  return everyone;
}

function sleep(seconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}

/** Prints the proxy's own view every 5 s until `done` settles. */
async function watch(done: Promise<unknown>, elapsed: () => number, metricsUrl: string, backend: DemoBackend): Promise<void> {
  let over = false;
  void done.finally(() => (over = true));
  for (;;) {
    await Promise.race([done, sleep(5)]);
    if (over) return;
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
  /** `hold` for a held session; absent on the relay path. */
  readonly path?: string;
  readonly knownSender?: string;
  readonly passed?: 'address' | 'network';
  readonly reasons?: readonly string[];
  readonly messages?: ReadonlyArray<{ readonly result?: string }>;
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

/** What a legitimate group paid: seconds from first connect to delivery, one figure or min / median / max. */
function legitimateDelay(group: readonly Sent[]): string {
  const times = group.flatMap((s) => (s.delivery.delivered === undefined ? [] : [s.delivery.delivered])).sort((a, b) => a - b);
  const s = (t: number | undefined) => (t ?? NaN).toFixed(1);
  const median = (times[(times.length - 1) >> 1]! + times[times.length >> 1]!) / 2;
  const shown = times.length === 0 ? [] : times.length === 1 ? [`${s(times[0])} s`] : [`${s(times[0])} / ${s(median)} / ${s(times.at(-1))} s`];
  const lost = group.length - times.length;
  return [...shown, ...(lost > 0 ? [`${lost} NOT delivered`] : [])].join(', ');
}

/** The last reply a try heard before its QUIT's 221, or how it ended. */
function lastWord(result: VisitResult): string {
  return result.replies.filter((r) => !r.startsWith('221')).at(-1) ?? result.ending;
}

function report(sent: Sent[], metricsUrl: string, m: Metrics, backend: DemoBackend, files: { log: string; policies: string }, proxyExit: number | null): number {
  const kindOf = new Map(sent.flatMap((s) => s.sender.tries.map((v) => [v.address, s.kind] as const)));
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
  const columns = ['senders', 'sessions', 'relayed', 'refused', 'gave up'];
  console.log(`  ${'client'.padEnd(20)}${columns.map((c) => c.padStart(9)).join('')}   ${'legitimate delay'.padEnd(24)}heard`);
  for (const kind of [...new Set(sent.map((s) => s.kind))]) {
    const group = sent.filter((s) => s.kind === kind);
    const tries = group.flatMap((s) => s.delivery.tries);
    const count = (ending: string) => tries.filter((r) => r.ending === ending).length;
    const refusals = tries.flatMap((r) => r.replies).filter((r) => r >= '4');
    const codes = tally(refusals.map((r) => /^\d{3}( \d\.\d{1,3}\.\d{1,3})?/.exec(r)?.[0] ?? r));
    const cost = group[0]?.legitimate ? legitimateDelay(group) : `stopped ${group.filter((s) => s.delivery.delivered === undefined).length} of ${group.length}`;
    const figures = [group.length, tries.length, count('relayed'), count('refused'), count('gave up')];
    console.log(`  ${kind.padEnd(20)}${figures.map((n) => String(n).padStart(9)).join('')}   ${cost.padEnd(24)}${codes}`);
  }
  console.log('  legitimate delay: seconds from a legitimate sender\'s first connect to the 250 for its message (min / median / max');
  console.log('  over several senders), what the tarpit cost it; for bots, how many never got their message through.');
  const heard = new Map(sent.flatMap((s) => s.delivery.tries.flatMap((r) => r.replies)).filter((r) => r >= '4').map((r) => [r.slice(0, 9), r]));
  if (heard.size > 0) console.log(`\n  The refusals' text:\n${[...heard.values()].map((r) => `    ${r}`).join('\n')}`);

  // The proxy's side of the same story: who vouched for each relayed legitimate sender, and why the instant retrier was held again.
  const PASSED = { address: 'passed: address (it sat the hold out itself)', network: 'passed: network (a neighbour in its /24 sat the hold out)' };
  console.log('\nHow the legitimate senders got through, from the proxy\'s log (the session that relayed their message):\n');
  for (const s of sent.filter((s) => s.legitimate)) {
    const address = s.sender.tries[s.delivery.tries.length - 1]?.address ?? '';
    const line = sessions.find((l) => l.line.client === address && l.line.messages?.some((msg) => msg.result === 'relayed'))?.line;
    const why = line === undefined ? 'no relayed session in the log' : line.knownSender !== undefined ? `knownSender: ${line.knownSender}, on its first connection` : line.passed !== undefined ? PASSED[line.passed] : `verdict ${line.verdict ?? '?'}`;
    console.log(`  ${s.kind.padEnd(14)} ${address.padEnd(12)} try ${s.delivery.tries.length}: ${why}`);
  }
  console.log(`\nThe instant retrier (${RETRIER_VISIT.address}), try by try, from the proxy's log:\n`);
  sessions
    .filter((l) => l.line.client === RETRIER_VISIT.address)
    .forEach(({ line }, i) => {
      const early = line.reasons?.find((r) => r.startsWith('early-retry'));
      const what = line.path !== 'hold' ? `relayed (${line.passed ?? line.verdict ?? '?'})` : early === undefined ? 'held: a first contact' : `held again: ${early}`;
      console.log(`  try ${i + 1}: ${what}`);
    });

  console.log(`\nThe backend received ${backend.delivered.length} message(s) and refused ${backend.unknownRecipients()} unknown recipient(s) with 550 5.1.1:`);
  for (const d of backend.delivered) console.log(`  from <${d.from}> to ${d.to.map((t) => `<${t}>`).join(', ')}, client ${d.client} (XCLIENT ADDR)`);

  const example = sessions.find((s) => s.line.hangup !== undefined) ?? sessions[0];
  const cli = relative(process.cwd(), join(ROOT, 'src/cli/main.ts'));
  console.log('\nWhere to look next:');
  console.log(`  the proxy's log, one JSON line per session (${sessions.length} here): ${files.log}`);
  if (example) console.log(`    e.g. ${example.text}`);
  console.log(`  the policy it ran (the shipped one, shorter times; bots in block.cidr, the known sender in known-senders.cidr): ${files.policies}`);
  console.log(`  why a bot was held: node --import tsx ${cli} explain --ip ${wave(0)[2]?.visit.address ?? ''} --policies ${files.policies}`);
  console.log(`  /metrics: ${metricsUrl}/metrics while the demo ran (curl it from another terminal next time); a deployed proxy serves it on metrics.listen, 127.0.0.1:9325 by default`);

  const failures: string[] = [];
  for (const s of sent.filter((s) => s.legitimate)) {
    const heardBy = s.delivery.tries.map(lastWord).join(' / ');
    const who = `the ${s.kind} ${s.sender.tries[0]?.address ?? ''}`;
    if (s.delivery.delivered === undefined) failures.push(`${who} was never delivered (it heard: ${heardBy})`);
    else if (s.kind === 'known sender' && s.delivery.tries.length > 1) failures.push(`${who} was held before delivery (it heard: ${heardBy})`);
  }
  const senderOf = new Map(sent.flatMap((s) => s.sender.tries.map((v) => [v.from, s] as const)));
  const leaked = backend.delivered.filter((d) => senderOf.get(d.from)?.legitimate !== true);
  if (leaked.length > 0) failures.push(`bots got ${leaked.length} message(s) through: ${leaked.map((d) => `${senderOf.get(d.from)?.kind ?? 'unknown'} <${d.from}>`).join(', ')}`);
  if (proxyExit !== 0) failures.push(`the proxy exited with ${String(proxyExit)} on SIGTERM`);
  console.log(failures.length === 0 ? '\nOK: every legitimate sender\'s message was delivered, the known sender\'s at once; no bot\'s was.' : `\nFAILED: ${failures.join('; ')}`);
  return failures.length === 0 ? 0 : 1;
}

process.exitCode = await main();
