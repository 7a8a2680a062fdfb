/**
 * `npm run bench`: relay throughput and added latency, proxy vs straight to
 * the backend, all from one run (the machines are shared and noisy: compare
 * as ratios within a run). See bench/README.md for what each figure means.
 *
 * Backend: bench/lib/xclient-sink.c, a C sink like Postfix's smtp-sink but
 * with Postfix smtpd's XCLIENT (smtp-sink offers no XCLIENT ADDR and answers
 * XCLIENT with 250, which the proxy rightly refuses). Load: Postfix's
 * smtp-source (C). The proxy runs in its own process as it ships: the built
 * CLI (`dist/cli/main.js serve`), compiled by the bench first into a temp dir
 * (bench/lib/build-dist.ts).
 * Environment: BENCH_CPU_PROF=<dir> runs the proxy under `node --cpu-prof`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { benchPolicies } from './lib/bench-policies.js';
import { buildDist } from './lib/build-dist.js';
import { freePort, runBench, requireExecutable, runSource, sleep, startProxy, startSink, stopAll, type ProcStats, type ProxyProcess } from './lib/procs.js';
import { finishReport, fmt, median, percentile, printHeader, table } from './lib/report.js';
import { smallMessage, timedSend } from './lib/smtp-timer.js';
import { startPostfix } from '../test/helpers/postfix.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const MESSAGE_BYTES = 1000;
const SESSIONS = [20, 50] as const;
const MODES = ['per-connection', 'reuse'] as const;
type Mode = (typeof MODES)[number];
const MODE_LABEL: Record<Mode, string> = { 'per-connection': '1 msg / connection', reuse: 'many / connection (-d)' };
const REPEATS = 3;
/** Sessions for the real-Postfix comparison (its smtpd forks a process per session). */
const POSTFIX_SESSIONS = 20;
/** Seconds each measured run should last (message counts are calibrated to it). */
const TARGET_SECONDS = 3;
const LATENCY_WARMUP = 30;
const LATENCY_MESSAGES = 300;
const FROM = 'sender@client.bench';
const TO = 'rcpt@backend.bench';

interface Run {
  readonly target: 'direct' | 'proxy';
  readonly messages: number;
  readonly seconds: number;
  readonly rate: number;
  readonly ok: boolean;
  readonly problem?: string;
  /** proxy runs: proxy CPU ms used during the run */
  readonly proxyCpuMs?: number;
}

/** What the messages are sent to: something that can count what it accepted. */
interface Backend {
  readonly name: 'sink' | 'postfix';
  readonly port: number;
  messages(): Promise<number>;
  /** ms to wait for the count to catch up after a run (Postfix logs after queueing). */
  readonly settleMs: number;
}

interface Scenario {
  readonly backend: Backend['name'];
  readonly sessions: number;
  readonly mode: Mode;
  readonly runs: Run[];
  direct: number;
  proxy: number;
  ratio: number;
  proxyCpuMsPer1k: number;
  proxyCpuPercent: number;
  errors: string[];
}

interface ProxyInstance {
  readonly sessions: number;
  readonly config: Record<string, unknown>;
  messages: number;
  cpuMsInRuns: number;
  end?: ProcStats;
}

function proxyConfig(sinkPort: number, listenPort: number, sessions: number, policies: string): Record<string, unknown> {
  return {
    listen: `127.0.0.1:${listenPort}`,
    hostname: 'tarpit.bench',
    policies,
    backend: {
      address: `127.0.0.1:${sinkPort}`,
      // busy + closing + connecting + idle all count against poolSize.
      poolSize: sessions * 2 + 10,
      warm: sessions,
    },
    // Every bench client comes from 127.0.0.1.
    limits: { maxConnectionsPerClient: 1000 },
    smtp: { reverseLookup: false },
    metrics: { listen: null },
    log: { level: 'warn' },
  };
}

function sourceArgs(port: number, sessions: number, mode: Mode, messages: number): string[] {
  return [
    ...(mode === 'reuse' ? ['-d'] : []),
    '-s', String(sessions),
    '-m', String(messages),
    '-l', String(MESSAGE_BYTES),
    '-f', FROM,
    '-t', TO,
    '-M', 'client.bench',
    `127.0.0.1:${port}`,
  ];
}

async function measure(sink: Backend, port: number, sessions: number, mode: Mode, messages: number, target: Run['target'], proxy?: ProxyProcess): Promise<Run> {
  const before = await sink.messages();
  const cpuBefore = proxy?.stats().cpuMs;
  const run = await runSource(sourceArgs(port, sessions, mode, messages), 120_000);
  const cpuAfter = proxy?.stats().cpuMs;
  // The sink counts a message before it answers its final dot, so the count is complete; the retry is a safety net.
  let received = (await sink.messages()) - before;
  for (let i = 0; i < sink.settleMs / 50 && received < messages; i++) {
    await sleep(50);
    received = (await sink.messages()) - before;
  }
  const problems: string[] = [];
  if (run.rc !== 0) problems.push(`smtp-source exit ${run.rc === null ? 'killed (timeout)' : run.rc}${run.stderr ? `: ${run.stderr.split('\n').slice(0, 3).join(' / ')}` : ''}`);
  else if (run.stderr) problems.push(`smtp-source stderr: ${run.stderr.split('\n').slice(0, 3).join(' / ')}`);
  if (received !== messages) problems.push(`${sink.name} counted ${received} of ${messages} messages`);
  const seconds = run.ms / 1000;
  return {
    target,
    messages,
    seconds,
    rate: messages / seconds,
    ok: problems.length === 0,
    ...(problems.length ? { problem: `${target} ${sessions}s ${mode}: ${problems.join('; ')}` } : {}),
    ...(cpuBefore !== undefined && cpuAfter !== undefined ? { proxyCpuMs: cpuAfter - cpuBefore } : {}),
  };
}

/** Messages for a run of about TARGET_SECONDS at `rate`, a multiple of `sessions`. */
function countFor(rate: number, sessions: number): number {
  const n = Math.min(300_000, Math.max(500, Math.round((rate * TARGET_SECONDS) / sessions) * sessions));
  return Number.isFinite(n) ? n : 1000;
}

async function throughput(sink: Backend, proxy: ProxyProcess, instance: ProxyInstance, sessions: number, mode: Mode): Promise<Scenario> {
  const sc: Scenario = { backend: sink.name, sessions, mode, runs: [], direct: NaN, proxy: NaN, ratio: NaN, proxyCpuMsPer1k: NaN, proxyCpuPercent: NaN, errors: [] };
  // Warm-up that also calibrates the message counts (not reported).
  const warm = mode === 'reuse' ? 4000 : 1500;
  const wd = await measure(sink, sink.port, sessions, mode, warm, 'direct');
  const wp = await measure(sink, proxy.port, sessions, mode, Math.round(warm / 2), 'proxy', proxy);
  for (const w of [wd, wp]) if (!w.ok) sc.errors.push(`warm-up: ${w.problem}`);
  const nDirect = countFor(wd.rate, sessions);
  const nProxy = countFor(wp.rate, sessions);
  for (let i = 0; i < REPEATS; i++) {
    const d = await measure(sink, sink.port, sessions, mode, nDirect, 'direct');
    const p = await measure(sink, proxy.port, sessions, mode, nProxy, 'proxy', proxy);
    sc.runs.push(d, p);
    instance.messages += p.messages;
    instance.cpuMsInRuns += p.proxyCpuMs ?? 0;
    process.stdout.write(
      `  ${sink.name.padEnd(7)} ${String(sessions).padStart(2)} sessions, ${MODE_LABEL[mode].padEnd(22)} rep ${i + 1}: direct ${fmt(d.rate, 0).padStart(6)} msg/s (${d.messages} in ${d.seconds.toFixed(2)} s)  proxy ${fmt(p.rate, 0).padStart(6)} msg/s (${p.messages} in ${p.seconds.toFixed(2)} s)${d.ok && p.ok ? '' : '  ERRORS'}\n`,
    );
  }
  for (const r of sc.runs) if (!r.ok && r.problem) sc.errors.push(r.problem);
  const direct = sc.runs.filter((r) => r.target === 'direct');
  const proxied = sc.runs.filter((r) => r.target === 'proxy');
  sc.direct = median(direct.map((r) => r.rate));
  sc.proxy = median(proxied.map((r) => r.rate));
  sc.ratio = sc.proxy / sc.direct;
  const cpu = proxied.reduce((a, r) => a + (r.proxyCpuMs ?? 0), 0);
  const msgs = proxied.reduce((a, r) => a + r.messages, 0);
  const secs = proxied.reduce((a, r) => a + r.seconds, 0);
  sc.proxyCpuMsPer1k = (cpu / msgs) * 1000;
  sc.proxyCpuPercent = (cpu / (secs * 1000)) * 100;
  return sc;
}

interface Latency {
  readonly direct: number[];
  readonly proxy: number[];
  readonly errors: string[];
}

async function stopProxy(proxy: ProxyProcess, sessions: number, fatal: string[]): Promise<void> {
  const code = await proxy.stop();
  if (code !== 0) fatal.push(`proxy for ${sessions} sessions exited ${code}: ${proxy.output().slice(-2000)}`);
  else if (proxy.output().trim()) console.log(`  proxy log (warn and above):\n${proxy.output().trim().split('\n').slice(0, 10).join('\n')}`);
}

/**
 * The same comparison with what the proxy really fronts: a private Postfix
 * (test/helpers/postfix.ts) queueing every message to disk and delivering it
 * to the discard transport. Counted from its log (`removed` lines). Needs root.
 */
async function postfixScenarios(build: string, dir: string, scenarios: Scenario[], fatal: string[]): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log('\nreal Postfix backend: skipped (needs root to start a private Postfix)');
    return;
  }
  console.log(`\nbackend: a private Postfix ${POSTFIX_SESSIONS}-session run (smtpd → cleanup → queue → discard), proxy relaying to it with XCLIENT`);
  const postfix = await startPostfix({
    xclientHosts: '127.0.0.1',
    mynetworks: '127.0.0.0/8',
    extraMain: { default_transport: 'discard:bench', relay_transport: 'discard:bench', default_process_limit: '200' },
  });
  const removed = async (): Promise<number> => (await postfix.log()).split('\n').filter((l) => l.endsWith(': removed')).length;
  const backend: Backend = { name: 'postfix', port: postfix.port, messages: removed, settleMs: 30_000 };
  const config = proxyConfig(postfix.port, await freePort(), POSTFIX_SESSIONS, benchPolicies(dir));
  const file = join(dir, 'proxy-postfix.yaml');
  writeFileSync(file, stringify(config));
  try {
    const proxy = await startProxy(build, file, Number((config.listen as string).split(':')[1]));
    const instance: ProxyInstance = { sessions: POSTFIX_SESSIONS, config, messages: 0, cpuMsInRuns: 0 };
    try {
      for (const mode of MODES) scenarios.push(await throughput(backend, proxy, instance, POSTFIX_SESSIONS, mode));
    } finally {
      await stopProxy(proxy, POSTFIX_SESSIONS, fatal);
    }
  } finally {
    await postfix.stop();
  }
}

async function latency(sinkPort: number, proxyPort: number): Promise<Latency> {
  const message = smallMessage(FROM, TO, MESSAGE_BYTES);
  const send = (port: number) => timedSend({ host: '127.0.0.1', port, helo: 'client.bench', from: FROM, to: TO, message, timeoutMs: 10_000 });
  const out: Latency = { direct: [], proxy: [], errors: [] };
  for (let i = 0; i < LATENCY_WARMUP + LATENCY_MESSAGES; i++) {
    // Interleaved, so both see the same noise.
    for (const [target, port] of [['direct', sinkPort], ['proxy', proxyPort]] as const) {
      try {
        const ms = await send(port);
        if (i >= LATENCY_WARMUP) out[target].push(ms);
      } catch (err) {
        if (out.errors.length < 5) out.errors.push(`${target}: ${(err as Error).message}`);
        else if (out.errors.length === 5) out.errors.push('…');
      }
    }
  }
  return out;
}

async function main(): Promise<number> {
  const cpuProf = process.env.BENCH_CPU_PROF;
  const nodeFlags = cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${resolve(cpuProf)}`] : [];
  const run = printHeader('relay', ROOT, cpuProf ? `; proxy under --cpu-prof into ${cpuProf}` : '');
  console.log(`load: /usr/sbin/smtp-source, ${MESSAGE_BYTES}-byte payload (-l); backend: bench/lib/xclient-sink.c (smtp-sink-like C sink with Postfix XCLIENT semantics) on 127.0.0.1`);

  requireExecutable('/usr/sbin/smtp-source');
  // Measure what ships: the compiled JavaScript, not the tsx-loaded sources; the project's dist/ is left alone.
  const build = buildDist(ROOT);
  process.once('exit', () => build.remove()); // however the bench ends, Ctrl-C included
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-bench-'));
  const scenarios: Scenario[] = [];
  const instances: ProxyInstance[] = [];
  let lat: Latency | undefined;
  const fatal: string[] = [];
  try {
    if (build.problems) throw new Error(`tsc reported problems:\n${build.problems.slice(0, 2000)}`);
    console.log(`proxy: src compiled by tsc (tsconfig.build.json) into ${build.dir}`);
    const sinkProcess = await startSink(ROOT, dir);
    const sink: Backend & { pid: number } = { name: 'sink', port: sinkProcess.port, pid: sinkProcess.pid, messages: () => sinkProcess.messages(), settleMs: 1000 };
    console.log(`backend: xclient-sink pid ${sink.pid} on 127.0.0.1:${sink.port}`);
    for (const sessions of SESSIONS) {
      const config = proxyConfig(sink.port, await freePort(), sessions, benchPolicies(dir));
      const file = join(dir, `proxy-${sessions}.yaml`);
      writeFileSync(file, stringify(config));
      const listen = config.listen as string;
      const proxy = await startProxy(build.dir, file, Number(listen.split(':')[1]), nodeFlags);
      const instance: ProxyInstance = { sessions, config, messages: 0, cpuMsInRuns: 0 };
      instances.push(instance);
      console.log(`\nproxy pid ${proxy.pid} on 127.0.0.1:${proxy.port}, config (defaults otherwise): ${JSON.stringify(config)}`);
      try {
        if (lat === undefined) {
          console.log(`  latency: ${LATENCY_WARMUP} warm-up + ${LATENCY_MESSAGES} sequential messages each, direct and proxy interleaved`);
          lat = await latency(sink.port, proxy.port);
        }
        for (const mode of MODES) scenarios.push(await throughput(sink, proxy, instance, sessions, mode));
        instance.end = proxy.stats();
      } finally {
        await stopProxy(proxy, sessions, fatal);
      }
    }
    await postfixScenarios(build.dir, dir, scenarios, fatal);
  } catch (err) {
    fatal.push((err as Error).stack ?? String(err));
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }

  // ── report ──────────────────────────────────────────────────────────────
  console.log(`\nThroughput, ${MESSAGE_BYTES}-byte messages, msg/s, median of ${REPEATS} interleaved runs (ratio = proxy / direct)`);
  console.log(
    table([
      ['backend', 'sessions', 'mode', 'direct', 'proxy', 'ratio', 'proxy CPU ms/1k msg', 'proxy CPU % of 1 core', 'errors'],
      ...scenarios.map((s) => [s.backend, String(s.sessions), MODE_LABEL[s.mode], fmt(s.direct, 0), fmt(s.proxy, 0), fmt(s.ratio, 2), fmt(s.proxyCpuMsPer1k, 0), fmt(s.proxyCpuPercent, 0), s.errors.length ? `${s.errors.length} FLAGGED` : 'none']),
    ]),
  );
  const latSummary = lat && {
    direct: { p50: percentile(lat.direct, 50), p99: percentile(lat.direct, 99), n: lat.direct.length },
    proxy: { p50: percentile(lat.proxy, 50), p99: percentile(lat.proxy, 99), n: lat.proxy.length },
  };
  if (latSummary) {
    console.log(`\nLatency per message, sequential, new connection each, connect → 250 after the final dot, ms`);
    console.log(
      table([
        ['', 'p50', 'p99', 'n'],
        ['direct', fmt(latSummary.direct.p50, 2), fmt(latSummary.direct.p99, 2), String(latSummary.direct.n)],
        ['proxy', fmt(latSummary.proxy.p50, 2), fmt(latSummary.proxy.p99, 2), String(latSummary.proxy.n)],
        ['added', fmt(latSummary.proxy.p50 - latSummary.direct.p50, 2), fmt(latSummary.proxy.p99 - latSummary.direct.p99, 2), ''],
      ]),
    );
    if (lat && lat.errors.length) console.log(`  latency errors FLAGGED: ${lat.errors.join('; ')}`);
  }
  console.log(`\nProxy process (one per concurrency level; CPU counted during the measured proxy runs only)`);
  console.log(
    table([
      ['sessions', 'poolSize', 'warm', 'messages', 'CPU s', 'CPU ms/1k msg', 'RSS at end MB', 'peak RSS MB'],
      ...instances.map((i) => {
        const b = i.config.backend as { poolSize: number; warm: number };
        return [String(i.sessions), String(b.poolSize), String(b.warm), String(i.messages), fmt(i.cpuMsInRuns / 1000, 1), fmt((i.cpuMsInRuns / i.messages) * 1000, 0), fmt((i.end?.rssKb ?? NaN) / 1024, 0), fmt((i.end?.hwmKb ?? NaN) / 1024, 0)];
      }),
    ]),
  );
  const flagged = [...scenarios.flatMap((s) => s.errors), ...(lat?.errors ?? []), ...fatal];
  const figures = {
    messageBytes: MESSAGE_BYTES,
    throughput: scenarios.map((s) => ({
      backend: s.backend,
      sessions: s.sessions,
      mode: s.mode,
      directMsgPerS: Math.round(s.direct),
      proxyMsgPerS: Math.round(s.proxy),
      ratio: Number(s.ratio.toFixed(3)),
      proxyCpuMsPer1kMsg: Math.round(s.proxyCpuMsPer1k),
      proxyCpuPercent: Math.round(s.proxyCpuPercent),
      runs: s.runs.map((r) => ({ target: r.target, messages: r.messages, seconds: Number(r.seconds.toFixed(3)), ok: r.ok })),
      errors: s.errors,
    })),
    latencyMs: latSummary && {
      direct: { p50: Number(latSummary.direct.p50.toFixed(3)), p99: Number(latSummary.direct.p99.toFixed(3)), n: latSummary.direct.n },
      proxy: { p50: Number(latSummary.proxy.p50.toFixed(3)), p99: Number(latSummary.proxy.p99.toFixed(3)), n: latSummary.proxy.n },
      addedP50: Number((latSummary.proxy.p50 - latSummary.direct.p50).toFixed(3)),
      addedP99: Number((latSummary.proxy.p99 - latSummary.direct.p99).toFixed(3)),
    },
    proxy: instances.map((i) => ({ sessions: i.sessions, config: i.config, messages: i.messages, cpuMsPer1kMsg: Math.round((i.cpuMsInRuns / i.messages) * 1000), rssMbEnd: Math.round((i.end?.rssKb ?? NaN) / 1024), peakRssMb: Math.round((i.end?.hwmKb ?? NaN) / 1024) })),
  };
  return finishReport(run, figures, flagged);
}

await runBench(main);
