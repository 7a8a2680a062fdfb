/**
 * Runs `smtp-tarpit serve` as a real child process (the CLI, as an admin
 * would), with its JSON log lines parsed from stdout, for the worker and
 * privilege tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from '../helpers/require-tool.js';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { RELAY_POLICIES } from '../helpers/with-proxy.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly logs: Array<Record<string, unknown>>;
  readonly stderr: () => string;
  /** Resolves with the first log line `match` accepts (waiting up to timeoutMs). */
  waitLog(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Resolves with the exit code (null when killed by a signal). */
  exited(timeoutMs?: number): Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

/**
 * A port that is free now, for a child process to bind later. Not one the
 * kernel hands out (port 0, outgoing connections): those come from the
 * ephemeral range, and on a busy machine one of the suite's many connections
 * took such a port between our release and the child's bind (EADDRINUSE).
 * So a random port below that range, checked on every address.
 */
export async function freePort(): Promise<number> {
  const [ephemeralLow] = ephemeralRange();
  const low = Math.max(1024, ephemeralLow - 12_000);
  for (;;) {
    const port = low + Math.floor(Math.random() * (ephemeralLow - low));
    const server = createServer();
    const bound = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '0.0.0.0', () => resolve(true));
    });
    if (!bound) continue;
    await new Promise((resolve) => server.close(resolve));
    return port;
  }
}

/** The kernel's ephemeral port range (Linux), or its default. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low !== undefined && high !== undefined && low > 2048) return [low, high];
  } catch {
    // not Linux: the common default
  }
  return [32768, 60999];
}

/** Writes a configuration file (readable by everyone, so a dropped process can re-read it). */
export function writeConfig(values: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-serve-'));
  chmodSync(dir, 0o755);
  const file = join(dir, 'smtp-tarpit.yaml');
  const base = {
    policies: RELAY_POLICIES,
    hostname: 'tarpit.test',
    smtp: { reverseLookup: false },
    log: { level: 'info' },
    shutdown: { grace: 5 },
  };
  writeFileSync(file, stringify({ ...base, ...values }), { mode: 0o644 });
  return file;
}

/** `as` starts it under another uid/gid (the caller must be root). */
export function startServe(config: string, extraArgs: readonly string[] = [], as?: { uid: number; gid: number }): ServeProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'serve', '--config', config, ...extraArgs], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...as,
  });
  const logs: Array<Record<string, unknown>> = [];
  let pending = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    logs,
    stderr: () => stderr,
    async waitLog(match, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find(match);
        if (found) return found;
        if (child.exitCode !== null || Date.now() > deadline) {
          throw new Error(`log line not seen (exit ${child.exitCode}); stderr: ${stderr}; logs: ${logs.map((l) => JSON.stringify(l)).join('\n')}`);
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    async exited(timeoutMs = 20_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`serve did not exit within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      });
      try {
        return await Promise.race([exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
  };
}

/** The Uid line of /proc/<pid>/status: real, effective, saved and filesystem uids. */
export async function uidsOf(pid: number): Promise<number[]> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const line = status.split('\n').find((l) => l.startsWith('Uid:'));
  if (line === undefined) throw new Error(`no Uid line for ${pid}`);
  return line.slice(4).trim().split(/\s+/).map(Number);
}

/**
 * A process that runs as an unprivileged user (started so, or a worker forked
 * after the primary dropped root) must read the code: the repository and its
 * node_modules. A clone in a private directory (mktemp -d makes it 0700) lets
 * no one else through, so the directories above ROOT that others cannot
 * search are made searchable (o+x: search, not list) for the test and put
 * back after it.
 */
export function letOthersReachRoot(t: TestContext): void {
  for (let dir = ROOT; ; dir = dirname(dir)) {
    const mode = statSync(dir).mode & 0o7777;
    if ((mode & 0o001) === 0) {
      chmodSync(dir, mode | 0o001);
      t.after(() => chmodSync(dir, mode));
    }
    if (dirname(dir) === dir) break;
  }
}
