/**
 * `npm run bench:store` (also part of `npm run bench`): what the shared state
 * store costs (issue 6's benchmark), from one run: the policy engine's verdict
 * per connection with the memory store and with the Redis store, and how many
 * Redis commands a session sends.
 *
 * The engine is compiled as it ships (bench/lib/build-dist.ts) and runs in
 * this process against a private redis-server on loopback
 * (test/helpers/redis-server.ts). The policy is the shipped one with no DNS
 * zones and rDNS weights at 0, so a vet is the lists, the store and the score:
 * what is measured is the store, not DNS. Each session is what the front door
 * and the relay path do for a clean client: `engine.vet(…, {count: true})`,
 * then `engine.finish(session, 'delivered')` when it ends.
 *
 *   1. sequential: one session at a time, N sessions from N different /24s
 *      (every group new to the store): CPU µs and wall µs per session.
 *   2. concurrent: 50 sessions in flight at once: sessions per second.
 *   3. Redis commands per session, from the server's own INFO commandstats
 *      (every command it executed, scripts counted once per call) over the
 *      sequential phase; target at most 2 round trips per clean session.
 *
 * Exit status 1 and a FLAGGED line when the target is missed or a vet came
 * out wrong.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import type { PolicyEngine } from '../src/policy/engine.js';
import type { StateStore } from '../src/state/store.js';
import { buildDist } from './lib/build-dist.js';
import { freshEngine, loadEngineDist, type EngineDist } from './lib/engine-dist.js';
import { benchPolicies } from './lib/bench-policies.js';
import { runBench } from './lib/procs.js';
import { cpuMicros, finishReport, fmt, percentile, printHeader, round, table } from './lib/report.js';
import { startRedisServer } from '../test/helpers/redis-server.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_STORE_N ?? 5_000);
const WARMUP = 500;
const CONCURRENCY = 50;
const TARGET_ROUND_TRIPS = 2;

interface Phase {
  readonly cpuUsPerSession: number;
  readonly wallUsPerSession: number;
  readonly wallP99Us: number;
  readonly concurrentPerSecond: number;
}

/** Client i: its own /24 (127.A.B.1), so each session meets a group the store has not seen. */
function address(base: number, i: number): string {
  return `127.${base + Math.floor(i / 250)}.${1 + (i % 250)}.1`;
}

async function session(engine: PolicyEngine, client: string, problems: string[]): Promise<void> {
  const { session: s } = await engine.vet(client, { needName: false, count: true });
  if (s.verdict !== 'pass' && problems.length < 5) problems.push(`${client}: verdict ${s.verdict} (${s.summary().reasons.join('; ')})`);
  engine.finish(s, 'delivered');
}

async function measure(engine: PolicyEngine, base: number, problems: string[]): Promise<Phase> {
  for (let i = 0; i < WARMUP; i++) await session(engine, address(base, N + i), problems);
  const walls: number[] = [];
  const cpu0 = cpuMicros();
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const start = performance.now();
    await session(engine, address(base, i), problems);
    walls.push((performance.now() - start) * 1000);
  }
  const cpu = cpuMicros() - cpu0;
  const wall = (performance.now() - t0) * 1000;
  // Concurrent: other addresses (base + 40), CONCURRENCY sessions in flight.
  let next = 0;
  const c0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < N) await session(engine, address(base + 40, next++), problems);
    }),
  );
  const concurrentSeconds = (performance.now() - c0) / 1000;
  return { cpuUsPerSession: cpu / N, wallUsPerSession: wall / N, wallP99Us: percentile(walls, 99), concurrentPerSecond: N / concurrentSeconds };
}

/** Commands the server executed, in all, from INFO commandstats (`cmdstat_evalsha:calls=…`): Redis 7 counts the calls a script makes too. */
async function commandsExecuted(admin: Redis): Promise<{ total: number; byCommand: Record<string, number> }> {
  const info = await admin.info('commandstats');
  const byCommand: Record<string, number> = {};
  let total = 0;
  for (const m of info.matchAll(/^cmdstat_([a-z|_]+):calls=(\d+)/gm)) {
    const calls = Number(m[2]);
    byCommand[m[1]!] = calls;
    total += calls;
  }
  return { total, byCommand };
}

/** Round trips the Redis store made: its own count of operations sent to Redis (answered, failed or timed out; not the local fallbacks). */
async function redisRoundTrips(dist: EngineDist): Promise<number> {
  const metric = (await dist.registry.getMetricsAsJSON()).find((m) => m.name === 'smtp_tarpit_store_operations_total');
  let n = 0;
  for (const v of (metric as { values?: Array<{ value: number; labels: Record<string, string | number> }> } | undefined)?.values ?? []) {
    if (v.labels.store === 'redis' && v.labels.result !== 'fallback') n += v.value;
  }
  return n;
}

async function main(): Promise<number> {
  const run = printHeader('store', ROOT);
  console.log(`${N} sequential sessions (after ${WARMUP} warm-up) and ${N} with ${CONCURRENCY} in flight, per store; each session: engine.vet(count) + engine.finish('delivered'), every client from its own /24`);
  const flagged: string[] = [];
  const problems: string[] = [];
  const figures: Record<string, unknown> = { n: N, concurrency: CONCURRENCY };
  const build = buildDist(ROOT);
  process.once('exit', () => build.remove());
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-store-bench-'));
  const redis = await startRedisServer();
  const admin = new Redis(redis.url, { lazyConnect: false });
  const stores: StateStore[] = [];
  try {
    if (build.problems) throw new Error(`tsc reported problems:\n${build.problems.slice(0, 2000)}`);
    const dist = await loadEngineDist(build);
    const policyDir = benchPolicies(dir);
    const policy = dist.loadPolicyDir(policyDir);
    const quiet = { warn: () => undefined, info: () => undefined } as unknown as Parameters<EngineDist['createStateStore']>[1];
    const results: Record<string, Phase> = {};
    for (const [name, store] of [
      ['memory', 'memory'],
      ['redis', redis.url],
    ] as const) {
      const config = dist.loadConfigText(`state: { store: "${store}" }\n`, '(bench config)');
      const stateStore = dist.createStateStore(config.state, quiet);
      stores.push(stateStore);
      const { engine } = freshEngine(dist, config, policy, stateStore);
      const base = name === 'memory' ? 2 : 50;
      if (name === 'redis') {
        // Until its connection is ready the store answers from local memory: wait for it.
        const deadline = Date.now() + 5000;
        while (stateStore.health().degraded) {
          if (Date.now() > deadline) throw new Error(`the Redis store did not connect: ${stateStore.health().reason ?? ''}`);
          await new Promise((r) => setTimeout(r, 20));
        }
        await session(engine, address(base, 999_999 % 250), problems); // loads the scripts
        await admin.config('RESETSTAT');
      }
      const trips0 = await redisRoundTrips(dist);
      console.log(`  ${name}: measuring`);
      results[name] = await measure(engine, base, problems);
      if (name === 'redis') {
        // Warm-up + sequential + concurrent phases: 2 × N + WARMUP sessions since RESETSTAT.
        const sessions = 2 * N + WARMUP;
        // `finish` is not awaited by a session: let the last ones land before counting.
        await new Promise((r) => setTimeout(r, 500));
        const trips = (await redisRoundTrips(dist)) - trips0;
        const { total, byCommand } = await commandsExecuted(admin);
        const scriptCalls = (byCommand.evalsha ?? 0) + (byCommand.eval ?? 0);
        const perSession = trips / sessions;
        figures.redis_round_trips = { sessions, roundTrips: trips, perSession: round(perSession, 3), scriptCallsSeenByRedis: scriptCalls, commandsRedisExecuted: total - 1, byCommand };
        console.log(`  redis: ${trips} round trips for ${sessions} sessions: ${fmt(perSession, 2)} per session (Redis saw ${scriptCalls} script calls, ${total - 1} commands counting those inside the scripts: ${Object.entries(byCommand).map(([c, n]) => `${c} ${n}`).join(', ')})`);
        if (perSession > TARGET_ROUND_TRIPS + 0.01) flagged.push(`Redis round trips per clean session ${fmt(perSession, 2)} > ${TARGET_ROUND_TRIPS}`);
        if (scriptCalls !== trips) flagged.push(`the store counted ${trips} round trips, Redis saw ${scriptCalls} script calls`);
      }
    }
    const mem = results.memory!;
    const red = results.redis!;
    console.log(`\nA clean session's verdict and finish, per session (${N} sessions each)`);
    console.log(
      table([
        ['store', 'CPU µs', 'wall µs (sequential)', 'wall p99 µs', `sessions/s (${CONCURRENCY} in flight)`],
        ['memory', fmt(mem.cpuUsPerSession, 1), fmt(mem.wallUsPerSession, 1), fmt(mem.wallP99Us, 1), fmt(mem.concurrentPerSecond, 0)],
        ['redis', fmt(red.cpuUsPerSession, 1), fmt(red.wallUsPerSession, 1), fmt(red.wallP99Us, 1), fmt(red.concurrentPerSecond, 0)],
        ['redis / memory', fmt(red.cpuUsPerSession / mem.cpuUsPerSession, 2), fmt(red.wallUsPerSession / mem.wallUsPerSession, 2), '', fmt(red.concurrentPerSecond / mem.concurrentPerSecond, 2)],
      ]),
    );
    console.log('CPU µs: this process only (the engine and the Redis client), not redis-server; wall: vet start to finish sent, one session at a time');
    figures.memory = { cpuUs: round(mem.cpuUsPerSession, 2), wallUs: round(mem.wallUsPerSession, 2), wallP99Us: round(mem.wallP99Us, 1), perSecond: round(mem.concurrentPerSecond, 0) };
    figures.redis = { cpuUs: round(red.cpuUsPerSession, 2), wallUs: round(red.wallUsPerSession, 2), wallP99Us: round(red.wallP99Us, 1), perSecond: round(red.concurrentPerSecond, 0) };
  } catch (err) {
    flagged.push((err as Error).stack ?? String(err));
  } finally {
    for (const s of stores) await s.close();
    admin.disconnect();
    await redis.dispose();
    build.remove();
    rmSync(dir, { recursive: true, force: true });
  }
  flagged.push(...problems);
  return finishReport(run, figures, flagged);
}

await runBench(main);
