/**
 * What the benches (relay.ts, verdict.ts) print with: medians and
 * nearest-rank percentiles, aligned tables, the header naming the machine and
 * the command (the machines are shared and noisy, so every figure is printed
 * with where it was taken), and the ending: FLAGGED lines and a JSON line.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Nearest rank. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] as number;
}

export function fmt(n: number, digits: number): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

/** Rounded for the JSON line: figures, not float noise. */
export function round(n: number, digits: number): number | null {
  return Number.isFinite(n) ? Number(n.toFixed(digits)) : null;
}

/** First column left-aligned, the others right-aligned. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c] ?? 0) : cell.padStart(widths[c] ?? 0))).join('  ')).join('\n');
}

export interface Machine {
  readonly nproc: number;
  readonly cpu: string;
  readonly node: string;
  readonly loadavg: string;
}

export function machine(): Machine {
  let model = cpus()[0]?.model ?? 'unknown';
  try {
    model = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? model;
  } catch {
    // not Linux
  }
  let nproc = cpus().length;
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim());
  } catch {
    // cpus().length it is
  }
  let loadavg = '';
  try {
    loadavg = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    // not Linux
  }
  return { nproc, cpu: model, node: process.version, loadavg };
}

/** This process's user + system CPU in µs (all its threads: GC helpers and the libuv pool included). */
export function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

export interface RunInfo {
  readonly bench: string;
  readonly started: Date;
  readonly machine: Machine;
  /** How the bench was started, paths under the project shortened. */
  readonly command: string;
}

/** Prints the report's first lines (which bench, when, on what, run how); finishReport puts the same in the JSON line. */
export function printHeader(bench: string, root: string, note = ''): RunInfo {
  const started = new Date();
  const m = machine();
  const command = `node ${process.execArgv.join(' ')} ${process.argv.slice(1).map((a) => a.replace(`${root}/`, '')).join(' ')}`.replace(/\s+/g, ' ');
  console.log(`smtp-tarpit ${bench} bench — ${started.toISOString()}`);
  console.log(`machine: ${m.nproc} cores, ${m.cpu}, node ${m.node}, loadavg at start ${m.loadavg}`);
  console.log(`command: ${command} in ${root}${note}`);
  return { bench, started, machine: m, command };
}

/**
 * Ends a report: the first 20 FLAGGED lines (what went wrong or missed a
 * target), then one JSON line for scripts: the header's facts, `figures`, and
 * whether anything was flagged. Returns the exit status: 1 when anything was.
 */
export function finishReport(info: RunInfo, figures: Readonly<Record<string, unknown>>, flagged: readonly string[]): number {
  if (flagged.length > 0) {
    console.log(`\nFLAGGED (${flagged.length}):`);
    for (const f of flagged.slice(0, 20)) console.log(`  - ${f}`);
  }
  const { bench, started, machine: m, command } = info;
  console.log(`\n${JSON.stringify({ bench, date: started.toISOString(), machine: m, command, ...figures, ok: flagged.length === 0, flagged })}`);
  return flagged.length === 0 ? 0 : 1;
}
