/**
 * A real dnsmasq on 127.0.0.1 and a free port, serving only the lines it is
 * given (no /etc/dnsmasq.conf, no /etc/hosts, no upstream): the machine's
 * resolver is not on loopback (docs/platform-notes.md), so nothing here may reach it. One
 * launcher for the DNS tests (test/helpers/dns-server.ts, with its fixed test
 * zone) and the verdict bench (bench/verdict.ts, thousands of generated
 * records). It imports nothing from node:test, so a bench can load it.
 *
 * The lines go into a config file, not onto the command line: a bench's
 * thousands of records would not fit there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findTool } from './require-tool.js';

export interface DnsmasqOptions {
  /**
   * dnsmasq.conf lines: options without the leading `--` (`local=/zone/`,
   * `host-record=…`, `ptr-record=…`, `server=/zone/127.0.0.1#PORT`). Names
   * under a `local=` zone that have no record get NXDOMAIN; names outside
   * every zone get REFUSED.
   */
  readonly lines: readonly string[];
  /** Log every query to stderr (`log()`), for test failure messages. Off for benches: it costs dnsmasq CPU. */
  readonly logQueries?: boolean;
  /** How long start-up may take before it counts as failed (default 15 s: a loaded CI box is slow to start a process). */
  readonly readyTimeoutMs?: number;
}

export interface Dnsmasq {
  /** `127.0.0.1:PORT`, for DnsClient `servers`. */
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  /** The last 64 KB of dnsmasq's stderr: start-up messages, errors, and the queries when logged. */
  log(): string;
  /** SIGTERM, wait for the exit, remove the config file. */
  stop(): Promise<void>;
}

/** The name every instance answers (127.0.0.1), so the launcher knows it is up. */
const READY = 'ready.dnsmasq.test';
const LOG_LIMIT = 64 * 1024;

/** What a process that ends without stop() (a crash, Ctrl-C, a test file without its after hooks) must not leave behind. */
const running = new Map<ChildProcess, string>();
process.once('exit', () => {
  for (const [child, dir] of running) {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});

export async function startDnsmasq(options: DnsmasqOptions): Promise<Dnsmasq> {
  const binary = findTool('dnsmasq');
  if (!binary) throw new Error('dnsmasq not installed (apt-get install -y dnsmasq; gate tests with requireTool)');
  const dir = mkdtempSync(join(tmpdir(), 'dnsmasq-'));
  const conf = join(dir, 'dnsmasq.conf');
  writeFileSync(conf, [`host-record=${READY},127.0.0.1`, ...options.lines, ''].join('\n'));
  let lastError: Error | undefined;
  // The free port is found by binding and releasing it, so another process may take it first: retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freeUdpTcpPort();
    const child = spawn(binary, args(conf, port, options.logQueries === true), { stdio: ['ignore', 'ignore', 'pipe'] });
    running.set(child, dir);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      if (stderr.length > LOG_LIMIT) stderr = stderr.slice(-LOG_LIMIT);
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    void exited.then(() => running.delete(child));
    try {
      await waitReady(port, exited, options.readyTimeoutMs ?? 15_000);
      return {
        address: `127.0.0.1:${port}`,
        port,
        pid: child.pid as number,
        log: () => stderr,
        stop: async () => {
          await stopChild(child, exited);
          rmSync(dir, { recursive: true, force: true });
        },
      };
    } catch (err) {
      await stopChild(child, exited);
      lastError = new Error(`dnsmasq did not start: ${(err as Error).message}\n${stderr}`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error('dnsmasq did not start');
}

function args(conf: string, port: number, logQueries: boolean): string[] {
  return [
    '--keep-in-foreground',
    `--conf-file=${conf}`, // only this file: not /etc/dnsmasq.conf
    '--no-resolv', // no upstream from /etc/resolv.conf
    '--no-hosts',
    '--no-poll',
    `--port=${port}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces', // several servers side by side, each on its own port
    '--pid-file=', // none: nothing to clean up
    '--log-facility=-', // stderr
    ...(logQueries ? ['--log-queries'] : []),
    // As root dnsmasq would switch to `nobody`; staying root is harmless for a loopback server.
    ...(process.getuid?.() === 0 ? ['--user=root', '--group=root'] : []),
  ];
}

/** A port free for both UDP and TCP on 127.0.0.1 (dnsmasq serves both). */
async function freeUdpTcpPort(): Promise<number> {
  for (;;) {
    const tcp = net.createServer();
    const port = await new Promise<number>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(0, '127.0.0.1', () => resolve((tcp.address() as net.AddressInfo).port));
    });
    const udp = dgram.createSocket('udp4');
    const udpFree = await new Promise<boolean>((resolve) => {
      udp.once('error', () => resolve(false));
      udp.bind(port, '127.0.0.1', () => resolve(true));
    });
    await new Promise<void>((resolve) => tcp.close(() => resolve()));
    if (udpFree) {
      await new Promise<void>((resolve) => udp.close(() => resolve()));
      return port;
    }
    try {
      udp.close();
    } catch {
      // a socket whose bind failed may already be closed
    }
  }
}

/** Polls until dnsmasq answers READY; fails fast if it exits (port taken, bad line in the file). */
async function waitReady(port: number, exited: Promise<number | null>, timeoutMs: number): Promise<void> {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  let gone: number | null | undefined;
  void exited.then((code) => (gone = code));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (gone !== undefined) throw new Error(`exited with code ${String(gone)}`);
    try {
      await resolver.resolve4(READY);
      return;
    } catch {
      await sleep(20);
    }
  }
  throw new Error(`no answer within ${timeoutMs / 1000} s`);
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await exited;
}
