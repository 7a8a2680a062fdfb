/**
 * The processes the relay bench starts (smtp-sink, the proxy, smtp-source
 * runs), all tracked so that stopAll() ends every one of them, on success,
 * on error and on SIGINT/SIGTERM.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readSync, accessSync, constants } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';

const children = new Set<ChildProcess>();

/** Stopped by stopAll() and on exit, like every child the procs here start. */
export function track<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** SIGTERM to every child still running, SIGKILL to any left after `graceMs`. */
export async function stopAll(graceMs = 3000): Promise<void> {
  const left = [...children];
  for (const child of left) child.kill('SIGTERM');
  const deadline = Date.now() + graceMs;
  while (children.size > 0 && Date.now() < deadline) await sleep(50);
  for (const child of children) child.kill('SIGKILL');
}

/** Last resort on process exit: synchronous SIGKILL. */
function killAllSync(): void {
  for (const child of children) child.kill('SIGKILL');
}

/**
 * Runs a bench's `main` with every child it starts stopped on exit and on
 * SIGINT/SIGTERM, and sets the exit code to what `main` returns.
 */
export async function runBench(main: () => Promise<number>): Promise<void> {
  process.on('exit', killAllSync);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping everything the bench started`);
      void stopAll().finally(() => process.exit(130));
    });
  }
  process.exitCode = await main();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function requireExecutable(path: string): void {
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(
      `${path} not found. The relay bench needs Postfix's smtp-source and a C compiler: ` +
        `echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections && apt-get install -y postfix gcc`,
    );
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

async function waitForGreeting(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('data', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
      setTimeout(() => (s.destroy(), resolve(false)), 500);
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing greets on 127.0.0.1:${port}`);
    await sleep(50);
  }
}

export interface ProcStats {
  /** user + system CPU, ms */
  readonly cpuMs: number;
  readonly rssKb: number;
  readonly hwmKb: number;
}

const TICKS_PER_S = 100; // getconf CLK_TCK on Linux

export function procStats(pid: number): ProcStats {
  const stat = readText(`/proc/${pid}/stat`);
  // Fields after the "(comm)" may not be split naively: comm can hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  const status = readText(`/proc/${pid}/status`);
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { cpuMs: ((utime + stime) * 1000) / TICKS_PER_S, rssKb: kb('VmRSS'), hwmKb: kb('VmHWM') };
}

function readText(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(8192);
    const n = readSync(fd, buf, 0, buf.length, null);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

export interface Sink {
  readonly port: number;
  readonly pid: number;
  /** Messages the sink has accepted so far (its XCOUNT command). */
  messages(): Promise<number>;
}

/**
 * bench/lib/xclient-sink.c, compiled into `dir` with cc and run on 127.0.0.1:
 * smtp-sink's job with Postfix smtpd's XCLIENT behaviour (see the C file).
 */
export async function startSink(root: string, dir: string): Promise<Sink> {
  const bin = join(dir, 'xclient-sink');
  execFileSync('cc', ['-O2', '-o', bin, join(root, 'bench/lib/xclient-sink.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
  const port = await freePort();
  const child = track(spawn(bin, [String(port)], { stdio: ['ignore', 'ignore', 'inherit'] }));
  await waitForGreeting(port, 5000);
  return { port, pid: child.pid as number, messages: () => sinkCount(port) };
}

function sinkCount(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let text = '';
    let sent = false;
    s.setEncoding('latin1');
    s.on('data', (d: string) => {
      text += d;
      if (!sent && text.includes('\r\n')) {
        sent = true;
        s.write('XCOUNT\r\nQUIT\r\n');
      }
      const m = /\r\n250 (\d+)\r\n/.exec(text);
      if (m) {
        s.destroy();
        resolve(Number(m[1]));
      }
    });
    s.on('error', reject);
    setTimeout(() => (s.destroy(), reject(new Error('sink did not answer XCOUNT'))), 5000).unref();
  });
}

export interface SourceRun {
  readonly ms: number;
  readonly rc: number | null;
  readonly stderr: string;
}

/** One smtp-source run; a run that outlives `timeoutMs` is killed (rc null). */
export function runSource(args: readonly string[], timeoutMs: number): Promise<SourceRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = track(spawn('/usr/sbin/smtp-source', args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (s: string) => {
      if (stderr.length < 4000) stderr += s;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => (clearTimeout(timer), reject(err)));
    child.once('close', (rc) => {
      clearTimeout(timer);
      resolve({ ms: performance.now() - started, rc, stderr: stderr.trim() });
    });
  });
}

export interface ProxyProcess {
  readonly pid: number;
  readonly port: number;
  stats(): ProcStats;
  /** Log output (stderr) so far, for error reports. */
  output(): string;
  /** SIGTERM and wait for exit. */
  stop(): Promise<number | null>;
}

/**
 * The proxy as it ships: `node [flags] <root>/dist/cli/main.js serve --config
 * <yaml>` (`root` a build from bench/lib/build-dist.ts), listening on `port`,
 * which the configuration names. Ready once it greets on that port.
 */
export async function startProxy(root: string, configFile: string, port: number, nodeFlags: readonly string[] = []): Promise<ProxyProcess> {
  const child = track(
    spawn(process.execPath, [...nodeFlags, join(root, 'dist/cli/main.js'), 'serve', '--config', configFile], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    }),
  );
  let output = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    if (output.length < 20000) output += s;
  });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const failed = exited.then((code) => {
    throw new Error(`proxy exited (${code}) before it was ready:\n${output}`);
  });
  await Promise.race([waitForGreeting(port, 30000), failed]);
  failed.catch(() => undefined);
  return {
    pid: child.pid as number,
    port,
    stats: () => procStats(child.pid as number),
    output: () => output,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}
