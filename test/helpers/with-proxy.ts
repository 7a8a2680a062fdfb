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
import { PATIENCE_MS, waitFor } from './wait-for.js';

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
    // Timeouts no test here means to fire: generous, because a loaded CI box can stall the proxy for seconds.
    // Every test client is on loopback, most in 127.0.0.0/24: the per-network share of the pool is off unless a test is about it.
    backend: { address: `127.0.0.1:${options.backendPort}`, poolSize: 10, maxPerGroup: 10000, warm: 2, acquireTimeout: 10, timeouts: { connect: 10, greeting: 10, command: 10, dataInit: 10, dataBlock: 10, dataDone: 15 }, reconnect: { minDelay: 0.05, maxDelay: 0.5 } },
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
    async waitSessions(n, timeoutMs = PATIENCE_MS) {
      await waitFor(() => sessionLogs().length >= n, { timeoutMs, everyMs: 20, what: `${n} session log lines`, detail: () => `only ${sessionLogs().length}` });
      return sessionLogs();
    },
    stop: () => proxy.stop(0.5),
  };
}

/** The `nth` session log line for `client`, waiting up to PATIENCE_MS for it. */
export async function sessionOf(p: RunningProxy, client: string, nth = 1): Promise<Record<string, unknown>> {
  const lines = () => p.sessionLogs().filter((l) => l.client === client);
  await waitFor(() => lines().length >= nth, { everyMs: 20, what: `session log line #${nth} for ${client}`, detail: () => JSON.stringify(p.sessionLogs()) });
  return lines()[nth - 1]!;
}

/**
 * Seconds the proxy held a session on purpose, from its log line: the hold's
 * `held`, or the relay path's per-stage held time (a greet wait, an escalation).
 * 0 means "greeted and answered at once" exactly, where a client's stopwatch on
 * a loaded machine cannot tell 0.3 s of hold from 0.3 s of stall.
 */
export function heldSeconds(line: Record<string, unknown>): number {
  if (typeof line.held === 'number') return line.held;
  const stages = (line.stages ?? {}) as Record<string, { held?: number }>;
  return Object.values(stages).reduce((sum, s) => sum + (s.held ?? 0), 0);
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

