/**
 * `npm run bench:reload` (also part of `npm run bench`): what reloading a big
 * block list costs the sessions being served (issue 12's benchmark). Before,
 * a reload of a 1,000,000-line block.cidr stalled the event loop for 7.8 s and
 * the process grew to 1.07 GB.
 *
 * The proxy is compiled as it ships (bench/lib/build-dist.ts) and runs in
 * this process, so the event loop measured is the proxy's own; the relay
 * benches' C sink (bench/lib/xclient-sink.c) runs as a child process behind it. The policy is the
 * bench policy (bench/lib/bench-policies.ts) with a block.cidr of N lines
 * (default 1,000,000: /32s, /24s and some IPv6 /48s).
 *
 *   1. A clean client relays a message every 20 ms throughout.
 *   2. RELOADS reloads through the SIGHUP entry point (PolicyStore.requestReload,
 *      which waits for its 300 ms settle time, reads the files without
 *      blocking and compiles the list in a worker thread), one after the other;
 *      each time the block list is rewritten, so every reload compiles it.
 *      During each: event-loop delay (perf_hooks.monitorEventLoopDelay,
 *      1 ms resolution) p99 and max, and the reload's wall time.
 *   3. RSS and heap after a forced GC: at start, after the first reload and
 *      after the last.
 *   4. For comparison, one reload on the main thread (PolicyStore.reload):
 *      how long it holds the loop.
 *
 * Targets (issue 12): lag p99 during a reload at most 20 ms; RSS after the
 * last reload at most 1.5 times RSS after the first; every clean message
 * relayed. Exit status 1 and a FLAGGED line when one is missed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { benchPolicies } from './lib/bench-policies.js';
import { buildDist } from './lib/build-dist.js';
import { freePort, runBench, sleep, startSink, stopAll } from './lib/procs.js';
import { finishReport, fmt, percentile, printHeader, round, table } from './lib/report.js';
import { smallMessage, timedSend } from './lib/smtp-timer.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_RELOAD_N ?? 1_000_000);
const RELOADS = Number(process.env.BENCH_RELOAD_COUNT ?? 10);
const TARGET_LAG_P99_MS = 20;
const TARGET_RSS_GROWTH = 1.5;
const CLEAN_EVERY_MS = 20;

type ProxyModule = typeof import('../src/smtp/proxy.js');
type ConfigModule = typeof import('../src/config/load.js');
type LoggerModule = typeof import('../src/metrics/logger.js');

/** The block list: 60 % /32, 30 % /24, 10 % IPv6 /48, from a fixed seed; never 127/8, where the clean client is. */
function blockList(seed: number): string {
  let s = seed >>> 0;
  const next = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
  const lines: string[] = [`# bench block list, ${N} lines, seed ${seed}`];
  for (let i = 0; i < N; i++) {
    const x = next();
    const a = 1 + ((x >>> 24) % 126);
    if (i % 10 < 6) lines.push(`${a}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.${x & 255}`);
    else if (i % 10 < 9) lines.push(`${a}.${(x >>> 16) & 255}.${(x >>> 8) & 255}.0/24`);
    else lines.push(`2001:db8:${(x >>> 16).toString(16)}:${(x & 0xffff).toString(16)}::/64`);
  }
  return `${lines.join('\n')}\n`;
}

interface Memory {
  readonly rssMb: number;
  readonly heapMb: number;
}

function memoryAfterGc(gc: () => void): Memory {
  gc();
  gc();
  const m = process.memoryUsage();
  return { rssMb: m.rss / 2 ** 20, heapMb: m.heapUsed / 2 ** 20 };
}

interface ReloadRun {
  readonly ok: boolean;
  readonly wallMs: number;
  readonly lagP99Ms: number;
  readonly lagMaxMs: number;
}

async function main(): Promise<number> {
  const info = printHeader('reload', ROOT, `; N=${N}, reloads=${RELOADS}`);
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const flagged: string[] = [];
  const work = mkdtempSync(join(tmpdir(), 'smtp-tarpit-reload-'));
  const build = buildDist(ROOT);
  try {
    if (build.problems) console.log(`tsc reported problems (the build still ran):\n${build.problems}`);
    const { Proxy } = await build.load<ProxyModule>('smtp/proxy.js');
    const { loadConfigText } = await build.load<ConfigModule>('config/load.js');
    const { createLogger } = await build.load<LoggerModule>('metrics/logger.js');

    const policies = benchPolicies(work);
    const blockFile = join(policies, 'block.cidr');
    writeFileSync(blockFile, blockList(1));
    // The relay benches' C sink (bench/lib/xclient-sink.c): it answers XCLIENT like Postfix and keeps nothing.
    const sink = await startSink(ROOT, work);
    const port = await freePort();
    const config = loadConfigText(
      JSON.stringify({
        listen: `127.0.0.1:${port}`,
        hostname: 'tarpit.bench',
        policies,
        backend: { address: `127.0.0.1:${sink.port}`, poolSize: 10, warm: 2 },
        smtp: { reverseLookup: false },
        metrics: { listen: null },
        log: { level: 'info' },
      }),
      '(bench config)',
    );
    const logLines: string[] = [];
    const logger = createLogger('info', new Writable({ write: (chunk: Buffer, _e, done) => (logLines.length < 1000 && logLines.push(chunk.toString()), done()) }));
    const startedAt = performance.now();
    const proxy = new Proxy({ config, logger });
    await proxy.start();
    console.log(`proxy started with a ${N.toLocaleString('en')}-line block list in ${fmt((performance.now() - startedAt) / 1000, 1)} s (compiled on the main thread, before serving)`);
    const atStart = memoryAfterGc(gc);

    // The clean client: one message every CLEAN_EVERY_MS, each timed.
    const latencies: number[] = [];
    const failures: string[] = [];
    let sending = true;
    const client = (async () => {
      for (let i = 0; sending; i++) {
        const from = `s${i}@clean.example`;
        try {
          latencies.push(await timedSend({ host: '127.0.0.1', port, helo: 'clean.example', from, to: 'r@dest.example', message: smallMessage(from, 'r@dest.example'), timeoutMs: 30_000 }));
        } catch (err) {
          failures.push((err as Error).message);
        }
        await sleep(CLEAN_EVERY_MS);
      }
    })();

    const lag = monitorEventLoopDelay({ resolution: 1 });
    const reloadOnce = async (seed: number): Promise<ReloadRun> => {
      writeFileSync(blockFile, blockList(seed));
      lag.reset();
      lag.enable();
      const started = performance.now();
      const result = await proxy.policy.requestReload('sighup');
      const wallMs = performance.now() - started;
      lag.disable();
      return { ok: result.ok, wallMs, lagP99Ms: lag.percentile(99) / 1e6, lagMaxMs: lag.max / 1e6 };
    };

    // Idle lag with the clean client running, as a baseline.
    lag.enable();
    await sleep(3000);
    lag.disable();
    const baseline = { p99: lag.percentile(99) / 1e6, max: lag.max / 1e6 };

    const runs: ReloadRun[] = [];
    runs.push(await reloadOnce(2));
    const afterOne = memoryAfterGc(gc);
    for (let i = 1; i < RELOADS; i++) runs.push(await reloadOnce(2 + i));
    await sleep(500);
    const afterAll = memoryAfterGc(gc);

    // The old way, for comparison: the same reload on the main thread.
    writeFileSync(blockFile, blockList(99));
    // Synchronous: the loop is held for all of it.
    const syncStarted = performance.now();
    const syncResult = proxy.policy.reload('api');
    const syncMs = performance.now() - syncStarted;

    sending = false;
    await client;
    const probe = proxy.policy.current.policy.lists.block.list;
    await proxy.stop(2);

    const wall = runs.map((r) => r.wallMs);
    const p99s = runs.map((r) => r.lagP99Ms);
    const maxes = runs.map((r) => r.lagMaxMs);
    const worstP99 = Math.max(...p99s);
    const growth = afterAll.rssMb / afterOne.rssMb;
    console.log(
      `\n${table([
        ['', 'p50', 'worst', 'each'],
        ['reload wall time, s (300 ms of it the settle time)', fmt(percentile(wall, 50) / 1000, 2), fmt(Math.max(...wall) / 1000, 2), wall.map((w) => fmt(w / 1000, 2)).join(' ')],
        ['event-loop lag p99 during a reload, ms', fmt(percentile(p99s, 50), 1), fmt(worstP99, 1), p99s.map((x) => fmt(x, 1)).join(' ')],
        ['event-loop lag max during a reload, ms', fmt(percentile(maxes, 50), 1), fmt(Math.max(...maxes), 1), maxes.map((x) => fmt(x, 1)).join(' ')],
      ])}`,
    );
    console.log(`baseline (clean client, no reload, 3 s): lag p99 ${fmt(baseline.p99, 1)} ms, max ${fmt(baseline.max, 1)} ms`);
    console.log(`clean messages relayed: ${latencies.length}, failed: ${failures.length}; latency p50 ${fmt(percentile(latencies, 50), 1)} ms, p99 ${fmt(percentile(latencies, 99), 1)} ms`);
    console.log(
      `memory after a forced GC: at start RSS ${fmt(atStart.rssMb, 0)} MB (heap ${fmt(atStart.heapMb, 0)}), after 1 reload ${fmt(afterOne.rssMb, 0)} MB (heap ${fmt(afterOne.heapMb, 0)}), after ${RELOADS} ${fmt(afterAll.rssMb, 0)} MB (heap ${fmt(afterAll.heapMb, 0)}): ${fmt(growth, 2)}×`,
    );
    console.log(`the same reload on the main thread (PolicyStore.reload, as every reload was before): the loop held for ${fmt(syncMs, 0)} ms (${syncResult.ok ? 'ok' : 'failed'})`);
    console.log(`the list in force at the end: ${probe.size.toLocaleString('en')} entries`);

    if (runs.some((r) => !r.ok)) flagged.push(`a reload failed: ${logLines.filter((l) => l.includes('reload failed')).slice(0, 1).join('')}`);
    if (worstP99 > TARGET_LAG_P99_MS) flagged.push(`event-loop lag p99 during a reload ${fmt(worstP99, 1)} ms > ${TARGET_LAG_P99_MS} ms`);
    if (growth > TARGET_RSS_GROWTH) flagged.push(`RSS after ${RELOADS} reloads is ${fmt(growth, 2)}× that after one (> ${TARGET_RSS_GROWTH}×)`);
    if (failures.length > 0) flagged.push(`${failures.length} clean messages not relayed: ${failures[0] ?? ''}`);
    if (latencies.length === 0) flagged.push('no clean message was relayed');
    console.log(`\nverdict: ${flagged.length === 0 ? 'OK' : 'MISSED'} (targets: lag p99 ≤ ${TARGET_LAG_P99_MS} ms during a reload, RSS after ${RELOADS} reloads ≤ ${TARGET_RSS_GROWTH}× after one, every clean message relayed)`);
    return finishReport(
      info,
      {
        lines: N,
        reloads: RELOADS,
        reloadWallMs: { p50: round(percentile(wall, 50), 0), max: round(Math.max(...wall), 0) },
        lagMs: { p99Worst: round(worstP99, 1), p99Median: round(percentile(p99s, 50), 1), maxWorst: round(Math.max(...maxes), 1), baselineP99: round(baseline.p99, 1), baselineMax: round(baseline.max, 1) },
        rssMb: { start: round(atStart.rssMb, 0), afterOne: round(afterOne.rssMb, 0), afterAll: round(afterAll.rssMb, 0), growth: round(growth, 2) },
        heapMb: { start: round(atStart.heapMb, 0), afterOne: round(afterOne.heapMb, 0), afterAll: round(afterAll.heapMb, 0) },
        clean: { relayed: latencies.length, failed: failures.length, p50Ms: round(percentile(latencies, 50), 1), p99Ms: round(percentile(latencies, 99), 1) },
        mainThreadReloadMs: round(syncMs, 0),
      },
      flagged,
    );
  } finally {
    build.remove();
    rmSync(work, { recursive: true, force: true });
  }
}

await runBench(() => main().finally(() => stopAll()));
