/**
 * Starts the real proxy on 127.0.0.1 port 0 for one test and always stops it
 * (`finally`), with its JSON log lines captured for assertions.
 */
import { merge } from './policy-dir.js';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { loadConfigText } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { createLogger } from '../../src/metrics/logger.js';
import type { FaultPlan } from '../../src/smtp/faults.js';
import { Proxy } from '../../src/smtp/proxy.js';
import { stringify } from 'yaml';

export interface RunningProxy {
  readonly proxy: Proxy;
  readonly config: Config;
  readonly port: number;
  readonly metricsPort: number | undefined;
  /** Parsed JSON log lines so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** The per-session summary lines. */
  sessionLogs(): Array<Record<string, unknown>>;
  /** Resolves once `n` session lines have been logged. */
  waitSessions(n: number, timeoutMs?: number): Promise<Array<Record<string, unknown>>>;
}

export interface ProxyTestOptions {
  readonly backendPort: number;
  /** Extra configuration, merged over the test defaults (YAML-shaped object). */
  readonly config?: Record<string, unknown>;
  readonly faults?: FaultPlan;
  readonly metrics?: boolean;
}

/** Relays every loopback client at once: no first-contact hold, no DNS (test/fixtures/policies/relay). */
export const RELAY_POLICIES = fileURLToPath(new URL('../fixtures/policies/relay', import.meta.url));

export function testConfig(options: ProxyTestOptions): Config {
  const base: Record<string, unknown> = {
    listen: '127.0.0.1:0',
    policies: RELAY_POLICIES,
    hostname: 'tarpit.test',
    backend: { address: `127.0.0.1:${options.backendPort}`, poolSize: 10, warm: 2, acquireTimeout: 2, timeouts: { connect: 2, greeting: 5, command: 5, dataInit: 5, dataBlock: 5, dataDone: 10 }, reconnect: { minDelay: 0.05, maxDelay: 0.5 } },
    smtp: { reverseLookup: false },
    metrics: { listen: options.metrics ? '127.0.0.1:0' : null },
    log: { level: 'info' },
    shutdown: { grace: 5 },
  };
  return loadConfigText(stringify(merge(base, options.config ?? {})), 'test-config.yaml');
}

export async function startProxy(options: ProxyTestOptions): Promise<RunningProxy & { stop(): Promise<void> }> {
  const config = testConfig(options);
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const logger = createLogger(config.log.level, sink);
  const proxy = new Proxy({ config, logger, ...(options.faults ? { faults: options.faults } : {}) });
  const addresses = await proxy.start();
  const sessionLogs = () => logs.filter((l) => l.msg === 'session');
  return {
    proxy,
    config,
    port: addresses.smtp.port,
    metricsPort: addresses.metrics?.port,
    logs,
    sessionLogs,
    async waitSessions(n, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      while (sessionLogs().length < n) {
        if (Date.now() > deadline) throw new Error(`only ${sessionLogs().length} of ${n} session log lines`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return sessionLogs();
    },
    stop: () => proxy.stop(0.5),
  };
}

/** The `nth` session log line for `client`, waiting up to 5 s for it. */
export async function sessionOf(p: RunningProxy, client: string, nth = 1): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const lines = p.sessionLogs().filter((l) => l.client === client);
    if (lines.length >= nth) return lines[nth - 1]!;
    if (Date.now() > deadline) throw new Error(`no session log line #${nth} for ${client}; have ${JSON.stringify(p.sessionLogs())}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A session log line's policy reasons (none when the line has no `reasons`). */
export function reasons(line: Record<string, unknown>): string[] {
  return (line.reasons as string[] | undefined) ?? [];
}

export async function withProxy<T>(options: ProxyTestOptions, fn: (p: RunningProxy) => Promise<T>): Promise<T> {
  const running = await startProxy(options);
  try {
    return await fn(running);
  } finally {
    await running.stop();
  }
}

