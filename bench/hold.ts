/**
 * `npm run bench:hold`: what holding costs (issue 4's benchmark). One proxy,
 * as it ships (src compiled into a temp dir, `dist/cli/main.js serve`), with
 * a policy that sends every 127.x.y.z client but 127.0.0.1 to the tarpit, and
 * a separate client process (bench/lib/hold-client.ts) that opens N
 * connections from N source addresses and keeps them open. Reported from one
 * run: connections held (the proxy's own gauge), RSS per held connection,
 * event-loop lag while holding and while stuttering, CPU per 1,000 held, and
 * the latency of a clean relayed session (127.0.0.1, allow-listed, to the C
 * sink) during the hold as a ratio to the same without load.
 * See bench/README.md for the method.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { benchPolicies } from './lib/bench-policies.js';
import { buildDist } from './lib/build-dist.js';
import type { ClientStatus, HoldClientOptions } from './lib/hold-client.js';
import { blockAllLoopbackBut, holdPolicy } from './lib/hold-policy.js';
import { freePort, runBench, sleep, startProxy, startSink, stopAll, type ProxyProcess } from './lib/procs.js';
import { finishReport, fmt, median, percentile, printHeader, round, table } from './lib/report.js';
import { smallMessage, timedSend } from './lib/smtp-timer.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_HOLD_N ?? 19_000);
const RATE = Number(process.env.BENCH_HOLD_RATE ?? 2_000);
/** Seconds of steady holding over which CPU and event-loop lag are measured. */
const WINDOW_S = 20;
const LATENCY_WARMUP = 10;
const LATENCY_SESSIONS = 50;
/** Bytes per second of the stutter phase: OpenBSD spamd's rate. */
const STUTTER = 1;
/** prom-client's monitorEventLoopDelay resolution: every sample includes this timer interval. */
const LAG_RESOLUTION_S = 0.01;
const TARGET = { kbPerHeld: 6, lagP99Ms: 20, latencyRatio: 1.5 } as const;
const FROM = 'sender@client.bench';
const TO = 'rcpt@backend.bench';
/** Long enough that the stutter phase's banner trickles for the whole window at 1 byte/s. */
const LONG_HOSTNAME = 'tarpit-bench-stutter-phase-a-long-name-so-the-banner-trickles.for-well-over-a-minute.bench';

interface Metrics {
  held: number;
  lagP50: number;
  lagP99: number;
  lagMax: number;
  heapUsed: number;
}

async function scrape(port: number): Promise<Metrics> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const value = (name: string): number => {
    const m = new RegExp(`^${name.replace(/[{}"]/g, (c) => `\\${c}`)} ([0-9.e+-]+)$`, 'm').exec(text);
    return m ? Number(m[1]) : NaN;
  };
  return {
    // The gauge's series appears with the first held client.
    held: value('smtp_tarpit_connections_active{state="held"}') || 0,
    lagP50: value('smtp_tarpit_nodejs_eventloop_lag_p50_seconds'),
    lagP99: value('smtp_tarpit_nodejs_eventloop_lag_p99_seconds'),
    lagMax: value('smtp_tarpit_nodejs_eventloop_lag_max_seconds'),
    heapUsed: value('smtp_tarpit_nodejs_heap_size_used_bytes'),
  };
}

/** The proxy's configuration: limits raised for N held clients, metrics on, logs quiet. */
function proxyConfig(o: { listen: number; metrics: number; sink: number; policies: string; hostname: string; caps: boolean }): Record<string, unknown> {
  return {
    listen: `127.0.0.1:${o.listen}`,
    hostname: o.hostname,
    policies: o.policies,
    backend: { address: `127.0.0.1:${o.sink}`, poolSize: 8, warm: 2 },
    limits: { maxConnections: 30_000, maxConnectionsPerClient: 1000 },
    // Caps high enough that only the open-file limit bounds the hold (only when this build has them).
    ...(o.caps ? { tarpit: { maxHeld: 25_000, maxHeldPerClient: 1000, maxHeldPerGroup: 1000 } } : {}),
    smtp: { reverseLookup: false },
    metrics: { listen: `127.0.0.1:${o.metrics}` },
    log: { level: 'warn' },
  };
}

/** `smtp-tarpit check` on a config: null when valid, else what it said. */
function check(build: string, configFile: string): string | null {
  const r = spawnSync(process.execPath, [join(build, 'dist/cli/main.js'), 'check', '--config', configFile], { encoding: 'utf8', cwd: build });
  return r.status === 0 ? null : `${r.stdout}${r.stderr}`.trim().slice(0, 1500);
}

interface Client {
  readonly child: ChildProcess;
  last: ClientStatus | undefined;
  stop(): Promise<void>;
}

function startClient(options: HoldClientOptions): Client {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/hold-client.ts'), JSON.stringify(options)], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const client: Client = {
    child,
    last: undefined,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin?.end();
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    try {
      client.last = JSON.parse(line) as ClientStatus;
    } catch {
      // not a status line
    }
  });
  process.once('exit', () => child.kill('SIGKILL'));
  return client;
}

/** Opens N held connections; resolves once the proxy's gauge shows them all, or the ramp has had its time. */
async function ramp(client: Client, metricsPort: number, label: string): Promise<{ held: number; seconds: number }> {
  const started = performance.now();
  const deadline = started + ((N / RATE) + 20) * 1000;
  let held = 0;
  let lastPrint = 0;
  for (;;) {
    await sleep(250);
    held = (await scrape(metricsPort)).held;
    const s = client.last;
    const now = performance.now();
    if (now - lastPrint > 2000) {
      lastPrint = now;
      console.log(`  ${label}: ${((now - started) / 1000).toFixed(1)} s, client opened ${s?.opened ?? 0} connected ${s?.connected ?? 0} failed ${s?.failed ?? 0} closed by proxy ${s?.closedByPeer ?? 0}; proxy holds ${held}`);
    }
    if ((s?.rampDone && held >= N) || now > deadline || client.child.exitCode !== null) break;
    if (s?.rampDone && s.connected + s.failed + s.closedByPeer >= N && now - started > (N / RATE) * 1000 + 5000) break;
  }
  return { held, seconds: (performance.now() - started) / 1000 };
}

interface Window {
  readonly held: number;
  readonly cpuMs: number;
  readonly seconds: number;
  readonly lag: Metrics;
  readonly bytesPerConnPerS: number;
  /** the proxy's RSS at the window's end, KB */
  readonly rssEndKb: number;
}

/** WINDOW_S of steady holding: the first scrape resets prom-client's lag histogram, the last reads it. */
async function window(proxy: ProxyProcess, client: Client, metricsPort: number): Promise<Window> {
  await scrape(metricsPort);
  const cpu0 = proxy.stats().cpuMs;
  const bytes0 = client.last?.bytes ?? 0;
  const t0 = performance.now();
  await sleep(WINDOW_S * 1000);
  const end = proxy.stats();
  const cpu1 = end.cpuMs;
  const bytes1 = client.last?.bytes ?? 0;
  const seconds = (performance.now() - t0) / 1000;
  const lag = await scrape(metricsPort);
  return { held: lag.held, cpuMs: cpu1 - cpu0, seconds, lag, bytesPerConnPerS: (bytes1 - bytes0) / Math.max(1, lag.held) / seconds, rssEndKb: end.rssKb };
}

async function latency(port: number, sink: { messages(): Promise<number> }, errors: string[], label: string): Promise<number[]> {
  const message = smallMessage(FROM, TO, 1000);
  const before = await sink.messages();
  const out: number[] = [];
  let sent = 0;
  for (let i = 0; i < LATENCY_WARMUP + LATENCY_SESSIONS; i++) {
    try {
      const ms = await timedSend({ host: '127.0.0.1', port, helo: 'client.bench', from: FROM, to: TO, message, timeoutMs: 10_000 });
      sent++;
      if (i >= LATENCY_WARMUP) out.push(ms);
    } catch (err) {
      if (errors.length < 5) errors.push(`${label}: ${(err as Error).message}`);
    }
  }
  const got = (await sink.messages()) - before;
  if (got !== sent) errors.push(`${label}: the sink counted ${got} of ${sent} relayed messages`);
  return out;
}

/** Lag over the timer's own interval, ms. */
const lagMs = (raw: number): number => (raw - LAG_RESOLUTION_S) * 1000;

async function main(): Promise<number> {
  const run = printHeader('hold', ROOT);
  console.log(`load: bench/lib/hold-client.ts (own process), ${N} connections at ${RATE}/s, each from its own 127.A.B.1; clean sessions from 127.0.0.1 to bench/lib/xclient-sink.c through the proxy`);
  const build = buildDist(ROOT);
  process.once('exit', () => build.remove());
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-hold-'));
  const flagged: string[] = [];
  const notes: string[] = [];
  const figures: Record<string, unknown> = { n: N, rate: RATE, windowSeconds: WINDOW_S };
  let hold: { rssBeforeKb: number; rssAtNKb: number; heapBefore: number; heapAtN: number; held: number; ramp: number; w: Window; client?: ClientStatus } | undefined;
  let stutter: { held: number; w: Window; client?: ClientStatus } | undefined;
  let base: number[] = [];
  let loaded: number[] = [];
  const latencyErrors: string[] = [];
  try {
    if (build.problems) throw new Error(`tsc reported problems:\n${build.problems.slice(0, 2000)}`);
    const { CONFIG_SCHEMA } = await build.load<{ CONFIG_SCHEMA: { properties: Record<string, unknown> } }>('config/schema.js');
    const caps = 'tarpit' in CONFIG_SCHEMA.properties;
    if (!caps) notes.push('this build has no `tarpit:` caps section in the config; none set');
    const sink = await startSink(ROOT, dir);
    console.log(`backend: xclient-sink pid ${sink.pid} on 127.0.0.1:${sink.port}`);

    // ── phase 1: hold N, silent (the banner is 300 s away) ───────────────
    const holdDir = benchPolicies(join(dir, 'hold'));
    holdPolicy(holdDir, { delay: 300, stutter: 0 });
    blockAllLoopbackBut(holdDir, '127.0.0.1');
    const metricsPort = await freePort();
    const config = proxyConfig({ listen: await freePort(), metrics: metricsPort, sink: sink.port, policies: holdDir, hostname: 'tarpit.bench', caps });
    const file = join(dir, 'hold.yaml');
    writeFileSync(file, stringify(config));
    const bad = check(build.dir, file);
    if (bad) throw new Error(`smtp-tarpit check refused the hold bench's config:\n${bad}`);
    const port = Number((config.listen as string).split(':')[1]);
    const proxy = await startProxy(build.dir, file, port);
    console.log(`\nproxy pid ${proxy.pid} on 127.0.0.1:${port}, metrics on :${metricsPort}, config (defaults otherwise): ${JSON.stringify(config)}`);
    figures.config = config;
    try {
      console.log(`  clean sessions without load: ${LATENCY_WARMUP} warm-up + ${LATENCY_SESSIONS}`);
      base = await latency(port, sink, latencyErrors, 'without load');
      await sleep(1000);
      const rssBeforeKb = proxy.stats().rssKb;
      const heapBefore = (await scrape(metricsPort)).heapUsed;
      const client = startClient({ host: '127.0.0.1', port, count: N, rate: RATE, base: 2 });
      try {
        const r = await ramp(client, metricsPort, 'hold');
        await sleep(2000); // let the last handshakes and verdicts settle
        const rssAtNKb = proxy.stats().rssKb;
        const atN = await scrape(metricsPort);
        const held = atN.held;
        console.log(`  holding ${held}: RSS ${fmt(rssBeforeKb / 1024, 1)} → ${fmt(rssAtNKb / 1024, 1)} MB; measuring ${WINDOW_S} s of steady holding`);
        const w = await window(proxy, client, metricsPort);
        console.log(`  clean sessions during the hold: ${LATENCY_WARMUP} warm-up + ${LATENCY_SESSIONS}`);
        loaded = await latency(port, sink, latencyErrors, 'during the hold');
        hold = { rssBeforeKb, rssAtNKb, heapBefore, heapAtN: atN.heapUsed, held, ramp: r.seconds, w, ...(client.last ? { client: client.last } : {}) };
        if (client.last?.errors.length) notes.push(`hold client errors: ${client.last.errors.join(', ')}`);
      } finally {
        await client.stop();
      }
    } finally {
      await proxy.stop();
    }

    // ── phase 2: hold N while every banner trickles out at STUTTER byte/s ─
    const stutterDir = benchPolicies(join(dir, 'stutter'));
    holdPolicy(stutterDir, { delay: 0, stutter: STUTTER });
    blockAllLoopbackBut(stutterDir, '127.0.0.1');
    const sMetrics = await freePort();
    const sConfig = proxyConfig({ listen: await freePort(), metrics: sMetrics, sink: sink.port, policies: stutterDir, hostname: LONG_HOSTNAME, caps });
    const sFile = join(dir, 'stutter.yaml');
    writeFileSync(sFile, stringify(sConfig));
    const sBad = check(build.dir, sFile);
    if (sBad) {
      notes.push(`stutter phase skipped: smtp-tarpit check refused a profile with stutter: ${STUTTER}: ${sBad.split('\n').slice(0, 3).join(' / ')}`);
      console.log(`\n${notes[notes.length - 1]}`);
    } else {
      const sPort = Number((sConfig.listen as string).split(':')[1]);
      const sProxy = await startProxy(build.dir, sFile, sPort);
      console.log(`\nstutter phase: proxy pid ${sProxy.pid}, profile stutter ${STUTTER} B/s, no delays, hostname of ${LONG_HOSTNAME.length} characters in the banner`);
      const client = startClient({ host: '127.0.0.1', port: sPort, count: N, rate: RATE, base: 100 });
      try {
        await ramp(client, sMetrics, 'stutter');
        const w = await window(sProxy, client, sMetrics);
        stutter = { held: w.held, w, ...(client.last ? { client: client.last } : {}) };
      } finally {
        await client.stop();
        await sProxy.stop();
      }
    }
  } catch (err) {
    flagged.push((err as Error).stack ?? String(err));
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }

  // ── report ──────────────────────────────────────────────────────────────
  if (hold) {
    const { w } = hold;
    const kbPerHeld = (hold.rssAtNKb - hold.rssBeforeKb) / hold.held;
    // At N the heap still holds the ramp's garbage (no GC forced: the proxy runs as it ships); at the window's end, 20 s later, usually not.
    const kbPerHeldEnd = (w.rssEndKb - hold.rssBeforeKb) / hold.held;
    const heapPerHeld = (hold.heapAtN - hold.heapBefore) / 1024 / hold.held;
    const cpuPer1kPerS = w.cpuMs / w.seconds / (w.held / 1000);
    console.log(`\nHolding ${N} silent clients (banner 300 s away), ${w.seconds.toFixed(1)} s window`);
    console.log(
      table([
        ['held (proxy gauge)', 'ramp s', 'RSS before MB', 'RSS at N MB', 'KB RSS/held', 'KB heap/held', 'RSS at window end MB', 'KB RSS/held at end', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'CPU ms/s per 1k held', 'CPU % of 1 core'],
        [String(hold.held), fmt(hold.ramp, 1), fmt(hold.rssBeforeKb / 1024, 1), fmt(hold.rssAtNKb / 1024, 1), fmt(kbPerHeld, 2), fmt(heapPerHeld, 2), fmt(w.rssEndKb / 1024, 1), fmt(kbPerHeldEnd, 2), fmt(lagMs(w.lag.lagP50), 2), fmt(lagMs(w.lag.lagP99), 2), fmt(lagMs(w.lag.lagMax), 2), fmt(cpuPer1kPerS, 3), fmt((w.cpuMs / w.seconds / 10), 2)],
      ]),
    );
    if (hold.held < N) flagged.push(`held ${hold.held} of ${N} (client: ${JSON.stringify(hold.client)})`);
    if (kbPerHeld > TARGET.kbPerHeld) flagged.push(`RSS per held connection ${fmt(kbPerHeld, 2)} KB > ${TARGET.kbPerHeld} KB`);
    if (lagMs(w.lag.lagP99) > TARGET.lagP99Ms) flagged.push(`event-loop lag p99 while holding ${fmt(lagMs(w.lag.lagP99), 2)} ms > ${TARGET.lagP99Ms} ms`);
    figures.hold = {
      held: hold.held,
      rampSeconds: round(hold.ramp, 1),
      rssBeforeKb: hold.rssBeforeKb,
      rssAtNKb: hold.rssAtNKb,
      rssWindowEndKb: w.rssEndKb,
      kbPerHeld: round(kbPerHeld, 3),
      heapKbPerHeld: round(heapPerHeld, 3),
      kbPerHeldWindowEnd: round(kbPerHeldEnd, 3),
      lagMs: { p50: round(lagMs(w.lag.lagP50), 3), p99: round(lagMs(w.lag.lagP99), 3), max: round(lagMs(w.lag.lagMax), 3) },
      cpuMsPerSecondPer1kHeld: round(cpuPer1kPerS, 4),
      cpuMsInWindow: w.cpuMs,
      client: hold.client,
    };
  }
  if (base.length || loaded.length) {
    const ratio = median(loaded) / median(base);
    console.log(`\nClean relayed session from 127.0.0.1 (allow-listed) to the sink, connect → 250 after the final dot, ms, ${LATENCY_SESSIONS} sequential each`);
    console.log(
      table([
        ['', 'p50', 'p99', 'n'],
        ['without load', fmt(median(base), 2), fmt(percentile(base, 99), 2), String(base.length)],
        [`holding ${hold?.held ?? '?'}`, fmt(median(loaded), 2), fmt(percentile(loaded, 99), 2), String(loaded.length)],
        ['ratio', fmt(ratio, 2), fmt(percentile(loaded, 99) / percentile(base, 99), 2), ''],
      ]),
    );
    if (!(ratio <= TARGET.latencyRatio)) flagged.push(`clean-session latency ratio (p50) ${fmt(ratio, 2)} > ${TARGET.latencyRatio}`);
    figures.cleanSessionMs = {
      withoutLoad: { p50: round(median(base), 3), p99: round(percentile(base, 99), 3), n: base.length },
      duringHold: { p50: round(median(loaded), 3), p99: round(percentile(loaded, 99), 3), n: loaded.length },
      ratioP50: round(ratio, 3),
    };
  }
  flagged.push(...latencyErrors);
  if (stutter) {
    const { w } = stutter;
    console.log(`\nHolding ${N} clients while every banner trickles out at ${STUTTER} B/s, ${w.seconds.toFixed(1)} s window`);
    console.log(
      table([
        ['held (proxy gauge)', 'bytes/s per connection (client)', 'lag p50 ms', 'lag p99 ms', 'lag max ms', 'CPU ms/s per 1k held', 'CPU % of 1 core'],
        [String(stutter.held), fmt(w.bytesPerConnPerS, 2), fmt(lagMs(w.lag.lagP50), 2), fmt(lagMs(w.lag.lagP99), 2), fmt(lagMs(w.lag.lagMax), 2), fmt(w.cpuMs / w.seconds / (w.held / 1000), 3), fmt(w.cpuMs / w.seconds / 10, 2)],
      ]),
    );
    if (!(w.bytesPerConnPerS >= STUTTER * 0.8 && w.bytesPerConnPerS <= STUTTER * 1.2)) flagged.push(`stutter phase: clients received ${fmt(w.bytesPerConnPerS, 2)} B/s each, not ${STUTTER}`);
    if (stutter.held < N) flagged.push(`stutter phase: held ${stutter.held} of ${N} (client: ${JSON.stringify(stutter.client)})`);
    if (lagMs(w.lag.lagP99) > TARGET.lagP99Ms) flagged.push(`event-loop lag p99 while stuttering ${fmt(lagMs(w.lag.lagP99), 2)} ms > ${TARGET.lagP99Ms} ms`);
    figures.stutter = {
      bytesPerSecond: STUTTER,
      held: stutter.held,
      bytesPerConnectionPerSecond: round(w.bytesPerConnPerS, 3),
      lagMs: { p50: round(lagMs(w.lag.lagP50), 3), p99: round(lagMs(w.lag.lagP99), 3), max: round(lagMs(w.lag.lagMax), 3) },
      cpuMsPerSecondPer1kHeld: round(w.cpuMs / w.seconds / (w.held / 1000), 4),
      client: stutter.client,
    };
  }
  console.log(`\nlag = prom-client's monitorEventLoopDelay samples (smtp_tarpit_nodejs_eventloop_lag_*) minus its ${LAG_RESOLUTION_S * 1000} ms timer interval`);
  for (const n of notes) console.log(`note: ${n}`);
  figures.notes = notes;
  return finishReport(run, figures, flagged);
}

await runBench(main);
