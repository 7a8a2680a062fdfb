/**
 * `node --import tsx bench/floor-postfix.ts` (root): the Postfix half of
 * bench/floor.ts. Where a real Postfix is the backend, the proxy competes with
 * Postfix for the same cores, so what the ratio can reach depends on Postfix's
 * own CPU per message. Measured per run, from /proc:
 *   - Postfix: master + live children (utime+stime) + the master's cutime+cstime
 *     (children that exited, e.g. smtpd, cleanup, discard), µs per message;
 *   - smtp-source: this process's cutime+cstime (it is our child, reaped by us);
 *   - the proxy (as bench/relay.ts runs it, and FLOOR_VARIANTS builds);
 *   - the whole machine, % of one core, while smtp-source ran.
 * Private Postfix as in bench/relay.ts (discard transport, queue on disk);
 * messages counted from its log. 20 sessions, 1000-byte messages, both modes.
 *
 * Environment: FLOOR_COMMIT (default HEAD), FLOOR_REPEATS (3), FLOOR_VARIANTS
 * (name=/dir,... as in bench/floor.ts), FLOOR_QUIET=<s> (wait for an idle machine).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { benchPolicies } from './lib/bench-policies.js';
import { freePort, requireExecutable, runSource, sleep, startProxy, stopAll, type ProxyProcess } from './lib/procs.js';
import { median } from './lib/report.js';
import { startPostfix } from '../test/helpers/postfix.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SESSIONS = 20;
const REPEATS = Number(process.env.FLOOR_REPEATS ?? 3);
const TARGET_SECONDS = 3;
type Mode = 'per-connection' | 'reuse';
const MODES: Mode[] = ['per-connection', 'reuse'];
const LABEL: Record<Mode, string> = { 'per-connection': '1 msg / connection', reuse: 'many / connection (-d)' };
const TICK_MS = 10;

function stat(pid: number | 'self'): { cpu: number; children: number } {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ').map(Number);
  return { cpu: ((f[11] ?? 0) + (f[12] ?? 0)) * TICK_MS, children: ((f[13] ?? 0) + (f[14] ?? 0)) * TICK_MS };
}
function machine(): { busy: number; total: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - (f[3] ?? 0) - (f[4] ?? 0), total };
}
const CORES = readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d/.test(l)).length;

async function quiet(): Promise<void> {
  const limit = Number(process.env.FLOOR_QUIET ?? 0) * 1000;
  const deadline = Date.now() + limit;
  while (Date.now() < deadline) {
    const a = machine();
    await sleep(500);
    const b = machine();
    if ((b.busy - a.busy) / (b.total - a.total) < 0.15) return;
  }
}

const fmt = (n: number, d = 0): string => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');

interface Run {
  target: string;
  mode: Mode;
  messages: number;
  rate: number;
  postfixUs: number;
  sourceUs: number;
  proxyUs: number;
  machinePct: number;
  ok: boolean;
  problem?: string;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('needs root (the Postfix master starts as root)');
  requireExecutable('/usr/sbin/smtp-source');
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-floor-postfix-'));
  const build = join(dir, 'build');
  mkdirSync(build);
  const commit = execFileSync('git', ['-C', ROOT, 'rev-parse', process.env.FLOOR_COMMIT ?? 'HEAD'], { encoding: 'utf8' }).trim();
  execFileSync('sh', ['-c', `git -C "${ROOT}" archive ${commit} src package.json tsconfig.json tsconfig.build.json | tar -x -C "${build}"`]);
  symlinkSync(join(ROOT, 'node_modules'), join(build, 'node_modules'));
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(build, 'tsconfig.build.json')], { stdio: 'inherit' });
  console.log(`floor-postfix ${new Date().toISOString()}, proxy built from ${commit}, loadavg ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);

  const postfix = await startPostfix({
    xclientHosts: '127.0.0.1',
    mynetworks: '127.0.0.0/8',
    extraMain: { default_transport: 'discard:bench', relay_transport: 'discard:bench', default_process_limit: '200' },
  });
  const removed = async (): Promise<number> => (await postfix.log()).split('\n').filter((l) => l.endsWith(': removed')).length;
  const postfixCpu = async (): Promise<number> => {
    const pids = await postfix.pids();
    const master = Math.min(...pids);
    let sum = 0;
    for (const pid of pids) {
      try {
        const s = stat(pid);
        sum += s.cpu + (pid === master ? s.children : 0);
      } catch {
        // exited meanwhile: its time is in the master's cutime now or soon
      }
    }
    return sum;
  };
  const proxies: { name: string; proc: ProxyProcess }[] = [];
  const runs: Run[] = [];
  const problems: string[] = [];
  try {
    const roots = [['proxy', build], ...(process.env.FLOOR_VARIANTS?.split(',').filter(Boolean).map((v) => v.split('=')) ?? [])] as [string, string][];
    for (const [name, root] of roots) {
      const port = await freePort();
      const file = join(dir, `${name}.yaml`);
      writeFileSync(
        file,
        stringify({
          listen: `127.0.0.1:${port}`,
          hostname: 'tarpit.bench',
          policies: benchPolicies(dir),
          backend: { address: `127.0.0.1:${postfix.port}`, poolSize: SESSIONS * 2 + 10, warm: SESSIONS },
          limits: { maxConnectionsPerClient: 1000 },
          smtp: { reverseLookup: false },
          metrics: { listen: null },
          log: { level: 'warn' },
        }),
      );
      proxies.push({ name: name === 'proxy' ? 'proxy' : `proxy@${name}`, proc: await startProxy(root, file, port) });
    }
    const targets = [{ name: 'direct', port: postfix.port, proc: undefined as ProxyProcess | undefined }, ...proxies.map((p) => ({ name: p.name, port: p.proc.port, proc: p.proc }))];
    const one = async (t: (typeof targets)[number], mode: Mode, messages: number): Promise<Run> => {
      await quiet();
      const before = await removed();
      const pf0 = await postfixCpu();
      const src0 = stat('self').children;
      const px0 = t.proc ? stat(t.proc.pid).cpu : 0;
      const m0 = machine();
      const started = performance.now();
      const run = await runSource(
        [...(mode === 'reuse' ? ['-d'] : []), '-s', String(SESSIONS), '-m', String(messages), '-l', '1000', '-f', 'sender@client.bench', '-t', 'rcpt@backend.bench', '-M', 'client.bench', `127.0.0.1:${t.port}`],
        180_000,
      );
      const seconds = (performance.now() - started) / 1000;
      const m1 = machine();
      let got = (await removed()) - before;
      for (let i = 0; i < 600 && got < messages; i++) {
        await sleep(50);
        got = (await removed()) - before;
      }
      await sleep(200);
      const pf1 = await postfixCpu();
      const src1 = stat('self').children;
      const px1 = t.proc ? stat(t.proc.pid).cpu : 0;
      const probs: string[] = [];
      if (run.rc !== 0 || run.stderr) probs.push(`smtp-source rc ${run.rc} ${run.stderr.slice(0, 200)}`);
      if (got !== messages) probs.push(`postfix removed ${got} of ${messages}`);
      const r: Run = {
        target: t.name,
        mode,
        messages,
        rate: messages / seconds,
        postfixUs: ((pf1 - pf0) / messages) * 1000,
        sourceUs: ((src1 - src0) / messages) * 1000,
        proxyUs: ((px1 - px0) / messages) * 1000,
        machinePct: ((m1.busy - m0.busy) / (m1.total - m0.total)) * CORES * 100,
        ok: probs.length === 0,
        ...(probs.length ? { problem: `${t.name} ${mode}: ${probs.join('; ')}` } : {}),
      };
      console.log(
        `  ${LABEL[mode].padEnd(22)} ${t.name.padEnd(14)} ${fmt(r.rate).padStart(5)} msg/s  postfix ${fmt(r.postfixUs).padStart(5)} µs/msg  smtp-source ${fmt(r.sourceUs).padStart(4)}  proxy ${fmt(r.proxyUs).padStart(5)}  machine ${fmt(r.machinePct)} %${r.ok ? '' : `  FLAGGED ${r.problem}`}`,
      );
      return r;
    };
    for (const mode of MODES) {
      const counts = new Map<string, number>();
      for (const t of targets) {
        const w = await one(t, mode, mode === 'reuse' ? 1000 : 600);
        counts.set(t.name, Math.max(400, Math.round((w.rate * TARGET_SECONDS) / SESSIONS) * SESSIONS));
      }
      for (let i = 0; i < REPEATS; i++) for (const t of targets) runs.push(await one(t, mode, counts.get(t.name) as number));
    }
  } catch (err) {
    problems.push((err as Error).stack ?? String(err));
  } finally {
    for (const p of proxies) await p.proc.stop();
    await postfix.stop();
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  for (const r of runs) if (!r.ok && r.problem) problems.push(r.problem);
  console.log(`\nPostfix backend, 20 sessions, 1000-byte messages, median of ${REPEATS}; CPU per message from /proc (µs)`);
  const rows = [['mode', 'target', 'msg/s', 'Postfix µs', 'smtp-source µs', 'proxy µs', 'sum µs', 'machine % (of 1 core)']];
  for (const mode of MODES) {
    for (const t of [...new Set(runs.map((r) => r.target))]) {
      const rs = runs.filter((r) => r.mode === mode && r.target === t);
      if (!rs.length) continue;
      const m = (f: (r: Run) => number): number => median(rs.map(f));
      rows.push([LABEL[mode], t, fmt(m((r) => r.rate)), fmt(m((r) => r.postfixUs)), fmt(m((r) => r.sourceUs)), t === 'direct' ? '-' : fmt(m((r) => r.proxyUs)), fmt(m((r) => r.postfixUs + r.sourceUs + r.proxyUs)), fmt(m((r) => r.machinePct))]);
    }
  }
  const w = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  console.log(rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(w[c] ?? 0) : cell.padStart(w[c] ?? 0))).join('  ')).join('\n'));
  if (problems.length) console.log(`\nFLAGGED:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  console.log(`\n${JSON.stringify({ bench: 'floor-postfix', commit, runs, problems })}`);
  return problems.length ? 1 : 0;
}

main().then(
  (code) => (process.exitCode = code),
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
