/**
 * `npm run bench:flood`: what a connection flood from one address costs the
 * clean clients beside it (issue 12). The proxy runs as it ships (the built
 * CLI, the shipped limits: maxConnections 5000, 20 per client) in front of
 * the C sink; a clean client on 127.0.0.1 sends one message per connection
 * every 100 ms, first alone, then while flood processes (scripts/flood.ts)
 * on 127.0.0.9 open 5,000 connections per burst as fast as they can and
 * never read. Printed: the refused connects per second and the proxy's CPU
 * per refusal, the clean sessions' p50/p99 (connect → 250 after the dot)
 * with and without the flood, any clean session that failed, and the
 * proxy's RSS. Every clean session must succeed; that is the verdict.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { benchPolicies } from './lib/bench-policies.js';
import { buildDist } from './lib/build-dist.js';
import { freePort, procStats, runBench, sleep, startProxy, startSink, stopAll, track, type ProxyProcess } from './lib/procs.js';
import { finishReport, fmt, percentile, printHeader, table } from './lib/report.js';
import { smallMessage, timedSend } from './lib/smtp-timer.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const FLOOD = join(ROOT, 'scripts/flood.ts');
const BURSTS = Number(process.env.FLOOD_BURSTS ?? 6);
const BURST = 5000;
const BASELINE_SESSIONS = 60;
const CLEAN_INTERVAL_MS = 100;
const MESSAGE = smallMessage('clean@client.bench', 'rcpt@backend.bench');

interface Burst {
  readonly count: number;
  readonly connected: number;
  readonly failed: number;
  readonly seconds: number;
}

/** One flood process: `count` connects from 127.0.0.9, never read, closed once the burst is reported. */
async function burst(port: number): Promise<Burst> {
  const child = track(spawn(process.execPath, ['--import', 'tsx', FLOOD, '--port', String(port), '--from', '127.0.0.9', '--count', String(BURST)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  }));
  let out = '';
  child.stdout.setEncoding('utf8');
  for await (const chunk of child.stdout) {
    out += chunk as string;
    if (out.includes('\n')) break;
  }
  child.stdin.end();
  await new Promise((r) => child.once('exit', r));
  return JSON.parse(out.split('\n')[0]!) as Burst;
}

interface Clean {
  readonly ms: number[];
  readonly failures: string[];
}

/** The clean client: one message per connection every 100 ms until `stop()` says so (at least `min` sessions). */
async function cleanClient(port: number, stop: () => boolean, min = 0): Promise<Clean> {
  const ms: number[] = [];
  const failures: string[] = [];
  while (ms.length + failures.length < min || !stop()) {
    try {
      ms.push(await timedSend({ host: '127.0.0.1', port, helo: 'clean.bench', from: 'clean@client.bench', to: 'rcpt@backend.bench', message: MESSAGE, timeoutMs: 30_000 }));
    } catch (err) {
      failures.push(err instanceof Error ? err.message : String(err));
    }
    await sleep(CLEAN_INTERVAL_MS);
  }
  return { ms, failures };
}

/** The bare Node listener (bench/lib/refuse-floor.ts) flooded the same way: Node's own CPU per refused connection. */
async function floorCpuPerConnection(): Promise<number> {
  const port = await freePort();
  const child: ChildProcess = track(spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/refuse-floor.ts'), String(port)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }));
  try {
    child.stdout!.setEncoding('utf8');
    for await (const chunk of child.stdout!) if ((chunk as string).includes('ready')) break;
    const before = procStats(child.pid!).cpuMs;
    let connects = 0;
    for (let i = 0; i < BURSTS; i++) connects += (await burst(port)).connected;
    return ((procStats(child.pid!).cpuMs - before) * 1000) / Math.max(connects, 1);
  } finally {
    child.kill();
  }
}

async function metric(port: number, name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) && line.includes(labels)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  return sum;
}

async function main(): Promise<number> {
  const info = printHeader('flood', ROOT);
  const build = buildDist(ROOT);
  process.once('exit', () => build.remove());
  if (build.problems) throw new Error(`tsc reported problems:\n${build.problems.slice(0, 2000)}`);
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-bench-flood-'));
  const sink = await startSink(ROOT, dir);
  const port = await freePort();
  const metricsPort = await freePort();
  // The shipped limits; only what the bench machine needs changed (no DNS here, every clean session from 127.0.0.1).
  const config = {
    listen: `127.0.0.1:${port}`,
    hostname: 'tarpit.bench',
    policies: benchPolicies(dir),
    backend: { address: `127.0.0.1:${sink.port}` },
    smtp: { reverseLookup: false },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
    log: { level: 'warn' },
  };
  const file = join(dir, 'proxy.yaml');
  writeFileSync(file, stringify(config));
  const proxy: ProxyProcess = await startProxy(build.dir, file, port);
  console.log(`proxy pid ${proxy.pid}, backend xclient-sink on ${sink.port}; shipped limits (maxConnections 5000, maxConnectionsPerClient 20)`);
  const flagged: string[] = [];

  const baseline = await cleanClient(port, () => true, BASELINE_SESSIONS);
  const rssBefore = proxy.stats().rssKb;

  const refusedBefore = await metric(metricsPort, 'smtp_tarpit_connections_total', 'result="refused_per_client"');
  const cpuBefore = proxy.stats().cpuMs;
  let flooding = true;
  const during = cleanClient(port, () => !flooding);
  const bursts: Burst[] = [];
  const t0 = performance.now();
  let peakRss = 0;
  for (let i = 0; i < BURSTS; i++) {
    bursts.push(await burst(port));
    peakRss = Math.max(peakRss, proxy.stats().rssKb);
  }
  const floodSeconds = (performance.now() - t0) / 1000;
  flooding = false;
  const cpuFlood = proxy.stats().cpuMs - cpuBefore;
  const clean = await during;
  const refused = (await metric(metricsPort, 'smtp_tarpit_connections_total', 'result="refused_per_client"')) - refusedBefore;
  const open = await metric(metricsPort, 'smtp_tarpit_connections_active', '');
  const rssAfter = proxy.stats().rssKb;
  await proxy.stop();

  const attempted = bursts.reduce((n, b) => n + b.count, 0);
  const connected = bursts.reduce((n, b) => n + b.connected, 0);
  const floorUs = await floorCpuPerConnection();
  const refusedPerSecond = refused / floodSeconds;
  // Upper bound: the clean client's sessions are in the CPU figure too.
  const cpuPerRefusalUs = (cpuFlood * 1000) / Math.max(refused, 1);
  console.log(`\nflood: ${BURSTS} bursts of ${BURST} connects from 127.0.0.9 that never read, ${fmt(floodSeconds, 1)} s`);
  console.log(
    table([
      ['', 'sessions', 'failed', 'p50 ms', 'p99 ms'],
      ['clean, alone', String(baseline.ms.length), String(baseline.failures.length), fmt(percentile(baseline.ms, 50), 1), fmt(percentile(baseline.ms, 99), 1)],
      ['clean, during the flood', String(clean.ms.length), String(clean.failures.length), fmt(percentile(clean.ms, 50), 1), fmt(percentile(clean.ms, 99), 1)],
    ]),
  );
  console.log(`refused: ${refused} of ${attempted} attempted (${connected} connected), ${Math.round(refusedPerSecond)}/s; proxy CPU ${fmt(cpuFlood, 0)} ms in the flood, ≤ ${fmt(cpuPerRefusalUs, 1)} µs per refusal`);
  console.log(`a bare Node listener that only answers 421 and closes (bench/lib/refuse-floor.ts), flooded the same way: ${fmt(floorUs, 1)} µs per connection (ratio ${fmt(cpuPerRefusalUs / floorUs, 2)})`);
  console.log(`proxy RSS: ${Math.round(rssBefore / 1024)} MB before, ${Math.round(peakRss / 1024)} MB peak, ${Math.round(rssAfter / 1024)} MB after; connections still counted after the flood: ${open}`);
  for (const f of [...baseline.failures, ...clean.failures].slice(0, 5)) flagged.push(`a clean session failed: ${f}`);
  if (clean.ms.length < 10) flagged.push(`only ${clean.ms.length} clean sessions ran during the flood`);
  return finishReport(
    info,
    {
      attempted,
      connected,
      refused,
      floorCpuPerConnectionUs: Number(floorUs.toFixed(1)),
      refusedPerSecond: Math.round(refusedPerSecond),
      cpuPerRefusalUs: Number(cpuPerRefusalUs.toFixed(1)),
      clean: { alone: summary(baseline), flood: summary(clean) },
      rssMb: { before: Math.round(rssBefore / 1024), peak: Math.round(peakRss / 1024), after: Math.round(rssAfter / 1024) },
    },
    flagged,
  );
}

function summary(c: Clean): Record<string, number> {
  return { sessions: c.ms.length, failed: c.failures.length, p50: Number(percentile(c.ms, 50).toFixed(1)), p99: Number(percentile(c.ms, 99).toFixed(1)) };
}

await runBench(() => main().finally(() => stopAll()));
