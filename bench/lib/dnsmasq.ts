/**
 * A real dnsmasq for the benches, on 127.0.0.1 and a free port, serving only
 * the records it is given (no /etc/hosts, no upstream, no system config): the
 * machine's resolver is not on loopback (NOTES.md) and no bench may depend on
 * it. Not test/helpers/dns-server.ts: that module imports node:test at load
 * time (for `after`) and serves a fixed test zone; a bench needs thousands of
 * generated records, so they go into a config file instead of the command line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findTool } from '../../test/helpers/require-tool.js';

export interface Dnsmasq {
  /** `127.0.0.1:PORT`, for DnsClient `servers`. */
  readonly address: string;
  readonly port: number;
  readonly pid: number;
  /** dnsmasq's stderr so far (start-up messages and errors only: queries are not logged). */
  log(): string;
  stop(): Promise<void>;
}

/** The name every instance answers, so the bench knows it is up. */
const READY = 'ready.dnsmasq.bench';

const running = new Set<ChildProcess>();
// A bench that dies or is interrupted must not leave dnsmasq behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * Starts dnsmasq with `lines` (dnsmasq.conf syntax, options without the
 * leading `--`: `host-record=…`, `ptr-record=…`, `local=/zone/`) written to
 * `<dir>/dnsmasq.conf`. Names under a `local=` zone that have no record get
 * NXDOMAIN; anything else gets REFUSED.
 */
export async function startDnsmasq(dir: string, lines: readonly string[]): Promise<Dnsmasq> {
  const binary = findTool('dnsmasq');
  if (!binary) throw new Error('dnsmasq not found: apt-get install -y dnsmasq');
  const conf = join(dir, 'dnsmasq.conf');
  writeFileSync(conf, [`host-record=${READY},127.0.0.1`, ...lines, ''].join('\n'));
  let lastError: Error | undefined;
  // The free port is found by binding and releasing it, so another process may take it first: retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freeUdpTcpPort();
    const args = [
      '--keep-in-foreground',
      `--conf-file=${conf}`, // only this file: not /etc/dnsmasq.conf
      '--no-resolv', // no upstream from /etc/resolv.conf
      '--no-hosts',
      '--no-poll',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--pid-file=',
      '--log-facility=-',
      // As root dnsmasq would switch to `nobody`, which may not read the temp dir.
      ...(process.getuid?.() === 0 ? ['--user=root', '--group=root'] : []),
    ];
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 20_000) stderr += chunk;
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    void exited.then(() => running.delete(child));
    try {
      await waitReady(port, exited);
      return {
        address: `127.0.0.1:${port}`,
        port,
        pid: child.pid as number,
        log: () => stderr,
        stop: async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await exited;
        },
      };
    } catch (err) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      lastError = new Error(`dnsmasq did not start: ${(err as Error).message}\n${stderr}`);
    }
  }
  throw lastError ?? new Error('dnsmasq did not start');
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
    try {
      udp.close();
    } catch {
      // a socket whose bind failed may already be closed
    }
    if (udpFree) return port;
  }
}

/** Polls until dnsmasq answers READY; fails fast if it exits (port taken, bad line in the file). */
async function waitReady(port: number, exited: Promise<number | null>): Promise<void> {
  const resolver = new Resolver({ timeout: 200, tries: 1 });
  resolver.setServers([`127.0.0.1:${port}`]);
  let gone: number | null | undefined;
  void exited.then((code) => (gone = code));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (gone !== undefined) throw new Error(`exited with code ${String(gone)}`);
    try {
      await resolver.resolve4(READY);
      return;
    } catch {
      await sleep(20);
    }
  }
  throw new Error('no answer within 10 s');
}
