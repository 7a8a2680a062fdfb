/**
 * A private redis-server for tests: 127.0.0.1 on a free port, its own temp
 * directory, no persistence (nothing written, nothing read back), so it
 * neither touches nor sees any other Redis. It can be stopped and started
 * again on the same port, for the store's fallback and reconnect tests.
 * Gate tests with `requireTool(t, 'redis-server')`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { findTool } from './require-tool.js';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:PORT`. */
  readonly url: string;
  /** Whether the server is running (between start and stop). */
  readonly running: boolean;
  /** The running server's process id (to pause it with SIGSTOP), undefined while stopped. */
  readonly pid: number | undefined;
  /** SIGTERM and wait for the exit; the port is then free (connections are refused). */
  stop(): Promise<void>;
  /** Starts it again on the same port, empty (no persistence). */
  start(): Promise<void>;
  /** Stops it and removes its directory. */
  dispose(): Promise<void>;
  /** The last 16 KB of its log. */
  log(): string;
}

const LOG_LIMIT = 16 * 1024;
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export async function startRedisServer(): Promise<RedisServer> {
  const binary = findTool('redis-server');
  if (!binary) throw new Error('redis-server not installed (apt-get install -y redis-server; gate tests with requireTool)');
  const dir = mkdtempSync(join(tmpdir(), 'redis-test-'));
  let output = '';
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let port = 0;

  const launch = async (wanted: number): Promise<void> => {
    const proc = spawn(binary, ['--port', String(wanted), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--loglevel', 'warning'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(proc);
    const append = (chunk: string): void => {
      output = (output + chunk).slice(-LOG_LIMIT);
    };
    proc.stdout?.setEncoding('utf8').on('data', append);
    proc.stderr?.setEncoding('utf8').on('data', append);
    let gone = false;
    exited = new Promise<void>((resolve) =>
      proc.once('exit', () => {
        gone = true;
        live.delete(proc);
        resolve();
      }),
    );
    // Generous: a loaded CI box can take seconds to start a process.
    const deadline = Date.now() + 15_000;
    while (!(await ping(wanted))) {
      if (gone) throw new Error(`redis-server exited on port ${wanted}: ${output}`);
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`redis-server did not answer on port ${wanted} within 15 s: ${output}`);
      }
      await sleep(20);
    }
    child = proc;
    port = wanted;
  };

  // The free port is found by binding and releasing it, so another process may take it first: retry.
  for (let attempt = 0; ; attempt++) {
    try {
      await launch(await freePort());
      break;
    } catch (err) {
      if (attempt >= 2) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const stop = async (): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    child = undefined;
    proc.kill('SIGTERM');
    await exited;
  };

  return {
    get port() {
      return port;
    },
    get url() {
      return `redis://127.0.0.1:${port}`;
    },
    get running() {
      return child !== undefined;
    },
    get pid() {
      return child?.pid;
    },
    stop,
    start: async () => {
      if (child !== undefined) return;
      await launch(port);
    },
    dispose: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
    log: () => output,
  };
}

/** One PING on a fresh socket: true on +PONG. */
function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
