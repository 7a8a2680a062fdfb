/**
 * `node --import tsx bench/floor.ts`: how much of the proxy's CPU per message
 * is smtp-server itself, and how much is the relay. CPU time of the server
 * process (/proc/<pid>/stat utime + stime) per message, not wall time, so a
 * busy machine blurs it less; runs interleaved, medians reported.
 *
 * Targets, all fed by Postfix's smtp-source (20 sessions, 1000-byte messages,
 * the same arguments as bench/relay.ts), all on 127.0.0.1:
 *   direct         the C sink itself (bench/lib/xclient-sink.c): throughput only
 *   bare-listen    smtp-server 3.21.6 alone, its own listener, hooks accept at once,
 *                  onData drains (bench/lib/floor-server.ts)
 *   bare-handover  the same behind our front door's hand-over (src/smtp/hand-over.ts)
 *   raw-relay      bare-handover plus the least a relay must do on the backend side,
 *                  written flat (XCLIENT, EHLO, MAIL, RCPT, DATA, body, dot, QUIT)
 *   proxy          the real proxy, built from src into a temp dir, `serve` with the
 *                  config bench/relay.ts uses, relaying to the sink
 *
 * Environment: FLOOR_REPEATS (default 3), FLOOR_TARGETS (comma list),
 * FLOOR_MODES (per-connection,reuse), FLOOR_PROF=<dir>: afterwards, one
 * `node --cpu-prof` run per relaying target in 1 msg/connection mode, summarised
 * with bench/lib/floor-profile.ts (FLOOR_PROF_TARGETS narrows which).
 * FLOOR_SECONDS: seconds each measured run should last (default 3).
 * FLOOR_QUIET=<s>: before each run, wait up to <s> seconds for an idle machine.
 * FLOOR_REF: the target paired ratios are computed against (default proxy).
 * FLOOR_COMMIT: the commit the proxy is built from (default HEAD).
 * FLOOR_VARIANTS=name=/dir,...: extra proxies, e.g. patched copies of a build,
 * measured as targets `proxy@name` (each dir: dist/, package.json, node_modules).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { benchPolicies } from './lib/bench-policies.js';
import { freePort, requireExecutable, runSource, sleep, startProxy, startSink, stopAll, type ProxyProcess } from './lib/procs.js';
import { median, table } from './lib/report.js';
import { summarise, type CpuProfile } from './lib/floor-profile.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SESSIONS = 20;
const MESSAGE_BYTES = 1000;
const TARGET_SECONDS = Number(process.env.FLOOR_SECONDS ?? 3);
const REPEATS = Number(process.env.FLOOR_REPEATS ?? 3);
const ALL_TARGETS = ['direct', 'bare-listen', 'bare-handover', 'raw-relay', 'proxy'] as const;
/** One of ALL_TARGETS, or `proxy@<name>` for a FLOOR_VARIANTS build. */
type Target = string;
/** FLOOR_VARIANTS=name=/dir,...: more proxies to measure, each a dir holding dist/cli/main.js, package.json and node_modules (e.g. a patched copy of a build). */
const VARIANTS = new Map((process.env.FLOOR_VARIANTS?.split(',').filter(Boolean) ?? []).map((v) => v.split('=') as [string, string]));
const TARGETS: Target[] = [...(process.env.FLOOR_TARGETS?.split(',') ?? ALL_TARGETS), ...[...VARIANTS.keys()].map((k) => `proxy@${k}`)];
const MODES = (process.env.FLOOR_MODES?.split(',') ?? ['per-connection', 'reuse']) as Mode[];
type Mode = 'per-connection' | 'reuse';
const MODE_LABEL: Record<Mode, string> = { 'per-connection': '1 msg / connection', reuse: 'many / connection (-d)' };
const TICK_MS = 10; // CLK_TCK 100
let BUILD_DIR = '';

interface Cpu {
  user: number;
  sys: number;
}
function cpuOf(pid: number): Cpu {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(f[11]) * TICK_MS, sys: Number(f[12]) * TICK_MS };
}

interface Server {
  readonly target: Target;
  readonly port: number;
  readonly pid: number | undefined;
  readonly relays: boolean;
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();

async function startFloor(target: Target, front: string, relay: string, sinkPort: number, nodeFlags: string[] = []): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, [...nodeFlags, '--import', 'tsx', join(ROOT, 'bench/lib/floor-server.ts'), String(port), front, relay, String(sinkPort), String(SESSIONS)], {
    cwd: ROOT,
    // floor-server takes the hand-over from the same build as the proxy.
    env: { ...process.env, FLOOR_HANDOVER: join(BUILD_DIR, 'dist/smtp/hand-over.js') },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  const exited = new Promise<void>((r) => child.once('exit', () => (children.delete(child), r())));
  await new Promise<void>((resolveReady, reject) => {
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (s: string) => s.includes('ready') && resolveReady());
    child.once('exit', (code) => reject(new Error(`floor-server ${target} exited ${code}`)));
  });
  return {
    target,
    port,
    pid: child.pid,
    relays: relay !== 'none',
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

function proxyConfig(sinkPort: number, listenPort: number, dir: string): Record<string, unknown> {
  // bench/relay.ts proxyConfig, 20 sessions.
  return {
    listen: `127.0.0.1:${listenPort}`,
    hostname: 'tarpit.bench',
    policies: benchPolicies(dir),
    backend: { address: `127.0.0.1:${sinkPort}`, poolSize: SESSIONS * 2 + 10, warm: SESSIONS },
    limits: { maxConnectionsPerClient: 1000 },
    smtp: { reverseLookup: false },
    metrics: { listen: null },
    log: { level: 'warn' },
  };
}

async function startRealProxy(build: string, dir: string, sinkPort: number, nodeFlags: string[] = [], target: Target = 'proxy'): Promise<Server & { proc: ProxyProcess }> {
  const port = await freePort();
  const file = join(dir, `proxy-${port}.yaml`);
  writeFileSync(file, stringify(proxyConfig(sinkPort, port, dir)));
  const proc = await startProxy(build, file, port, nodeFlags);
  return {
    target,
    port,
    pid: proc.pid,
    relays: true,
    proc,
    async stop() {
      const code = await proc.stop();
      if (code !== 0) throw new Error(`proxy exited ${code}: ${proc.output().slice(-2000)}`);
    },
  };
}

/**
 * The proxy as it ships, compiled into `build` from a commit (FLOOR_COMMIT,
 * default HEAD; git archive), not from the working tree or ROOT/dist: others
 * may be editing or rebuilding those while this runs.
 */
function buildProxy(build: string): string {
  const commit = execFileSync('git', ['-C', ROOT, 'rev-parse', process.env.FLOOR_COMMIT ?? 'HEAD'], { encoding: 'utf8' }).trim();
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive ${commit} src package.json tsconfig.json tsconfig.build.json | tar -x -C "${build}"`]);
  symlinkSync(join(ROOT, 'node_modules'), join(build, 'node_modules'));
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(build, 'tsconfig.build.json')], { stdio: 'inherit' });
  return commit;
}

function sourceArgs(port: number, mode: Mode, messages: number): string[] {
  return [...(mode === 'reuse' ? ['-d'] : []), '-s', String(SESSIONS), '-m', String(messages), '-l', String(MESSAGE_BYTES), '-f', 'sender@client.bench', '-t', 'rcpt@backend.bench', '-M', 'client.bench', `127.0.0.1:${port}`];
}

interface Run {
  target: Target;
  mode: Mode;
  round: number;
  /** Whole machine's CPU busy during the run, % of one core (200 = both cores of a 2-core machine). */
  machinePct: number;
  /** FLOOR_QUIET: whether the machine was idle when the run started. */
  quiet: boolean;
  messages: number;
  seconds: number;
  rate: number;
  userMs: number;
  sysMs: number;
  ok: boolean;
  problem?: string;
}

/** Jiffies busy and total over all cores, from /proc/stat. */
function machineCpu(): { busy: number; total: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}
const CORES = readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).length;

/** FLOOR_QUIET=<s>: before a run, wait up to that long for the machine to be idle (under 15 % busy over 0.5 s). */
async function waitQuiet(): Promise<boolean> {
  const limit = Number(process.env.FLOOR_QUIET ?? 0) * 1000;
  if (!limit) return false;
  const deadline = Date.now() + limit;
  while (Date.now() < deadline) {
    const a = machineCpu();
    await sleep(500);
    const b = machineCpu();
    if ((b.busy - a.busy) / (b.total - a.total) < 0.15) return true;
  }
  return false;
}

async function measure(server: Server, sinkCount: () => Promise<number>, mode: Mode, messages: number, round = 0): Promise<Run> {
  const quiet = await waitQuiet();
  const before = server.relays || server.target === 'direct' ? await sinkCount() : 0;
  const m0 = machineCpu();
  const c0 = server.pid !== undefined ? cpuOf(server.pid) : { user: NaN, sys: NaN };
  const run = await runSource(sourceArgs(server.port, mode, messages), 180_000);
  // A server's CPU for a session can trail the client's exit a little (QUIT, close).
  if (server.pid !== undefined) await sleep(100);
  const c1 = server.pid !== undefined ? cpuOf(server.pid) : { user: NaN, sys: NaN };
  const m1 = machineCpu();
  const problems: string[] = [];
  if (run.rc !== 0) problems.push(`smtp-source exit ${run.rc}: ${run.stderr.slice(0, 300)}`);
  else if (run.stderr) problems.push(`smtp-source stderr: ${run.stderr.slice(0, 300)}`);
  if (server.relays || server.target === 'direct') {
    let got = (await sinkCount()) - before;
    for (let i = 0; i < 20 && got < messages; i++) {
      await sleep(50);
      got = (await sinkCount()) - before;
    }
    if (got !== messages) problems.push(`sink counted ${got} of ${messages}`);
  }
  const seconds = run.ms / 1000;
  return {
    target: server.target,
    mode,
    round,
    machinePct: ((m1.busy - m0.busy) / (m1.total - m0.total)) * CORES * 100,
    quiet,
    messages,
    seconds,
    rate: messages / seconds,
    userMs: c1.user - c0.user,
    sysMs: c1.sys - c0.sys,
    ok: problems.length === 0,
    ...(problems.length ? { problem: `${server.target} ${mode}: ${problems.join('; ')}` } : {}),
  };
}

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

async function main(): Promise<number> {
  requireExecutable('/usr/sbin/smtp-source');
  const started = new Date();
  console.log(`floor bench ${started.toISOString()}, node ${process.version}, loadavg ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  console.log(`load: smtp-source ${sourceArgs(0, 'reuse', 0).join(' ').replace('127.0.0.1:0', '<port>')} (-d only for many/connection)`);
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-floor-'));
  const build = join(dir, 'build');
  mkdirSync(build);
  BUILD_DIR = build;
  const commit = buildProxy(build);
  console.log(`proxy: built from commit ${commit} (git archive) into a temp dir`);
  const runs: Run[] = [];
  const problems: string[] = [];
  let profiles: string | undefined;
  try {
    const sinkProc = await startSink(ROOT, dir);
    const sink = { port: sinkProc.port, pid: sinkProc.pid, messages: () => sinkProc.messages() };
    const servers: Server[] = [];
    for (const t of TARGETS) {
      if (t === 'direct') servers.push({ target: t, port: sink.port, pid: sink.pid, relays: false, stop: () => Promise.resolve() });
      else if (t === 'bare-listen') servers.push(await startFloor(t, 'listen', 'none', sink.port));
      else if (t === 'bare-handover') servers.push(await startFloor(t, 'handover', 'none', sink.port));
      else if (t === 'raw-relay') servers.push(await startFloor(t, 'handover', 'raw', sink.port));
      else if (t === 'proxy') servers.push(await startRealProxy(build, dir, sink.port));
      else if (t.startsWith('proxy@') && VARIANTS.has(t.slice(6))) servers.push(await startRealProxy(VARIANTS.get(t.slice(6)) as string, dir, sink.port, [], t));
      else throw new Error(`unknown target ${t}`);
    }
    try {
      for (const mode of MODES) {
        // Warm-up (JIT, pools) that also calibrates each target's message count.
        const counts = new Map<Target, number>();
        for (const s of servers) {
          const n = mode === 'reuse' ? 4000 : s.target === 'bare-listen' ? 400 : 1000;
          const w = await measure(s, sink.messages, mode, n);
          if (!w.ok && w.problem) problems.push(`warm-up: ${w.problem}`);
          counts.set(s.target, Math.min(200_000, Math.max(400, Math.round((w.rate * TARGET_SECONDS) / SESSIONS) * SESSIONS)));
        }
        for (let i = 0; i < REPEATS; i++) {
          for (const s of servers) {
            const r = await measure(s, sink.messages, mode, counts.get(s.target) as number, i);
            runs.push(r);
            if (!r.ok && r.problem) problems.push(r.problem);
            console.log(
              `  ${MODE_LABEL[mode].padEnd(22)} rep ${i + 1} ${s.target.padEnd(13)} ${fmt(r.rate).padStart(6)} msg/s  ${String(r.messages).padStart(6)} msgs  ${r.seconds.toFixed(2)} s  CPU ${fmt(((r.userMs + r.sysMs) / r.messages) * 1000).padStart(4)} µs/msg (user ${fmt((r.userMs / r.messages) * 1000)}, sys ${fmt((r.sysMs / r.messages) * 1000)})  ${fmt(((r.userMs + r.sysMs) / (r.seconds * 1000)) * 100)} % of a core, machine ${fmt(r.machinePct)} %${r.ok ? '' : '  FLAGGED'}`,
            );
          }
        }
      }
    } finally {
      for (const s of servers) await s.stop().catch((err: unknown) => problems.push(String(err)));
    }
    const profDir = process.env.FLOOR_PROF;
    if (profDir) profiles = await profile(resolve(profDir), build, dir, sink);
  } catch (err) {
    problems.push((err as Error).stack ?? String(err));
  } finally {
    for (const c of children) c.kill('SIGTERM');
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }

  console.log(`\nCPU per message of the server process (utime+stime from /proc, median of ${REPEATS}), 20 sessions, ${MESSAGE_BYTES}-byte messages`);
  const rows: string[][] = [['mode', 'target', 'msg/s', 'CPU µs/msg', 'user µs', 'sys µs', '% of a core', 'machine %', 'runs ok']];
  const summary: Record<string, unknown>[] = [];
  for (const mode of MODES) {
    for (const t of TARGETS) {
      const rs = runs.filter((r) => r.mode === mode && r.target === t);
      if (!rs.length) continue;
      const per = (r: Run, v: number): number => (v / r.messages) * 1000;
      const row = {
        mode,
        target: t,
        rate: median(rs.map((r) => r.rate)),
        cpuUs: median(rs.map((r) => per(r, r.userMs + r.sysMs))),
        userUs: median(rs.map((r) => per(r, r.userMs))),
        sysUs: median(rs.map((r) => per(r, r.sysMs))),
        corePct: median(rs.map((r) => ((r.userMs + r.sysMs) / (r.seconds * 1000)) * 100)),
        machinePct: median(rs.map((r) => r.machinePct)),
        ok: rs.filter((r) => r.ok).length,
        n: rs.length,
        cpuUsRuns: rs.map((r) => Math.round(per(r, r.userMs + r.sysMs))),
      };
      summary.push(row);
      rows.push([MODE_LABEL[mode], t, fmt(row.rate), fmt(row.cpuUs), fmt(row.userUs), fmt(row.sysUs), fmt(row.corePct), fmt(row.machinePct), `${row.ok}/${row.n}`]);
    }
  }
  console.log(table(rows));
  console.log(`(direct: CPU is the C sink's own; others: the Node process under test; machine: all processes, % of one core, ${CORES} cores)`);
  // Paired: each target's CPU/msg over the reference's in the same round, which cancels slow drifts in machine load.
  const ref = process.env.FLOOR_REF ?? 'proxy';
  if (TARGETS.includes(ref)) {
    console.log(`\nCPU per message relative to ${ref} in the same round (median of ${REPEATS} paired ratios, [min–max])`);
    const prow: string[][] = [['mode', 'target', `CPU/msg ÷ ${ref}`, 'range']];
    for (const mode of MODES) {
      for (const t of TARGETS) {
        if (t === ref || t === 'direct') continue;
        const ratios: number[] = [];
        for (let i = 0; i < REPEATS; i++) {
          const a = runs.find((r) => r.mode === mode && r.target === t && r.round === i);
          const b = runs.find((r) => r.mode === mode && r.target === ref && r.round === i);
          if (a && b) ratios.push((a.userMs + a.sysMs) / a.messages / ((b.userMs + b.sysMs) / b.messages));
        }
        if (!ratios.length) continue;
        prow.push([MODE_LABEL[mode], t, fmt(median(ratios), 3), `${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}`]);
        summary.push({ mode, target: t, pairedVs: ref, ratio: median(ratios), ratios });
      }
    }
    console.log(table(prow));
  }
  if (profiles) console.log(`\n${profiles}`);
  if (problems.length) console.log(`\nFLAGGED:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  console.log(`\n${JSON.stringify({ bench: 'floor', date: started.toISOString(), commit, sessions: SESSIONS, messageBytes: MESSAGE_BYTES, summary, runs, problems })}`);
  return problems.length ? 1 : 0;
}

/** One `--cpu-prof` run per relaying target, 1 msg/connection; returns the summaries. */
async function profile(profDir: string, build: string, dir: string, sink: { port: number; messages: () => Promise<number> }): Promise<string> {
  const out: string[] = [];
  const only = process.env.FLOOR_PROF_TARGETS?.split(',');
  const targets = TARGETS.filter((t) => t !== 'direct' && t !== 'bare-listen' && (!only || only.includes(t)));
  for (const t of targets) {
    const tdir = join(profDir, t.replace('@', '-'));
    rmSync(tdir, { recursive: true, force: true });
    mkdirSync(tdir, { recursive: true });
    const flags = ['--cpu-prof', `--cpu-prof-dir=${tdir}`];
    const server =
      t === 'proxy'
        ? await startRealProxy(build, dir, sink.port, flags)
        : t.startsWith('proxy@')
          ? await startRealProxy(VARIANTS.get(t.slice(6)) as string, dir, sink.port, flags, t)
          : await startFloor(t, 'handover', t === 'raw-relay' ? 'raw' : 'none', sink.port, flags);
    let msgs = 0;
    try {
      await measure(server, sink.messages, 'per-connection', 1000); // warm-up, in the profile too
      for (let i = 0; i < 3; i++) {
        const r = await measure(server, sink.messages, 'per-connection', 3000);
        msgs += r.messages;
      }
    } finally {
      await server.stop();
    }
    // One file per thread (tsx's loader has its own); the main thread's is the largest.
    const file = readdirSync(tdir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .sort((a, b) => statSync(join(tdir, b)).size - statSync(join(tdir, a)).size)[0];
    if (!file) {
      out.push(`${t}: no profile written`);
      continue;
    }
    out.push(`── ${t}: ${join(tdir, file)} (${msgs + 1000} messages, 1 msg/connection, 20 sessions) ──\n${summarise(JSON.parse(readFileSync(join(tdir, file), 'utf8')) as CpuProfile, msgs + 1000)}`);
  }
  return out.join('\n\n');
}

process.on('SIGINT', () => {
  for (const c of children) c.kill('SIGKILL');
  process.exit(130);
});
main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
