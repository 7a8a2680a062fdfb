/**
 * The one prom-client registry and every metric smtp-tarpit exports (docs/design.md §6):
 * `smtp_tarpit_` prefix, base units (seconds, bytes), `_total` on counters, and
 * labels from closed sets only (stage, result, reason, command), never addresses.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { TallyCounter } from './tally-counter.js';
import { zeroSeries } from './zero-series.js';

export const registry = new Registry();
collectDefaultMetrics({ register: registry, prefix: 'smtp_tarpit_' });
// prom-client also exports these three sums as gauges named `_total`, which
// Prometheus reserves for counters (promtool's lint says so); the same figures
// are the sums of `nodejs_active_{handles,requests,resources}{type}`.
for (const name of ['handles', 'requests', 'resources']) registry.removeSingleMetric(`smtp_tarpit_nodejs_active_${name}_total`);

/** Fast loopback replies and slow real MTAs both resolve: 1 ms to 10 min. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const SESSION_BUCKETS = [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800];

/** A TallyCounter: every refused connection of a flood counts here (src/smtp/front.ts). */
export const connectionsTotal = new TallyCounter({
  name: 'smtp_tarpit_connections_total',
  help: 'Client connections accepted by the front door, by what happened to them at connect (accepted, or refused at a cap).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const sessionsActive = new Gauge({
  name: 'smtp_tarpit_connections_active',
  help: 'Client connections open right now, by state: vetting (the policy is deciding), held (in the tarpit), relaying.',
  labelNames: ['state'] as const,
  registers: [registry],
});

export const sessionDuration = new Histogram({
  name: 'smtp_tarpit_session_duration_seconds',
  help: 'How long client sessions lasted from accept to close.',
  buckets: SESSION_BUCKETS,
  registers: [registry],
});

export const messagesTotal = new Counter({
  name: 'smtp_tarpit_messages_total',
  help: 'Mail transactions by result: relayed (the backend said 250 after DATA), tempfailed (the client got 4xx), rejected (the client got 5xx).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const recipientsTotal = new Counter({
  name: 'smtp_tarpit_recipients_total',
  help: 'RCPT TO commands relayed to the backend, by the class of its reply (accepted, tempfailed, rejected).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const backendPoolConnections = new Gauge({
  name: 'smtp_tarpit_backend_pool_connections',
  help: 'Backend connections by state: connecting, idle (warm, ready for a client), busy (carrying a client session).',
  labelNames: ['state'] as const,
  registers: [registry],
});

export const backendPoolSize = new Gauge({
  name: 'smtp_tarpit_backend_pool_size',
  help: 'Most backend connections the pool may open at once (backend.poolSize).',
  registers: [registry],
});

export const backendPoolWaitSeconds = new Histogram({
  name: 'smtp_tarpit_backend_pool_wait_seconds',
  help: 'How long a client session waited for a backend connection.',
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const backendConnectsTotal = new Counter({
  name: 'smtp_tarpit_backend_connects_total',
  help: 'Attempts to open a backend connection, by result (ok, error, no_xclient).',
  labelNames: ['result'] as const,
  registers: [registry],
});

export const backendReplySeconds = new Histogram({
  name: 'smtp_tarpit_backend_reply_seconds',
  help: 'Backend reply latency by command (connect, greeting, ehlo, starttls, xclient, mail, rcpt, data, dot, rset, quit).',
  labelNames: ['command'] as const,
  buckets: LATENCY_BUCKETS,
  registers: [registry],
});

export const backendUp = new Gauge({
  name: 'smtp_tarpit_backend_up',
  help: '1 when the last backend connection attempt succeeded and the backend accepts XCLIENT, else 0.',
  // With workers, 0 when any worker's last attempt failed (a sum would read 1 as "up").
  aggregator: 'min',
  registers: [registry],
});

export const handlerErrorsTotal = new Counter({
  name: 'smtp_tarpit_handler_errors_total',
  help: 'Errors caught by the exception trap, by the stage they happened in (process for uncaught ones); each client got 451 4.3.0.',
  labelNames: ['stage'] as const,
  registers: [registry],
});

export const limitHitsTotal = new TallyCounter({
  name: 'smtp_tarpit_limit_hits_total',
  help: 'Times a resource limit refused something, by limit (connections, per_client, reserve, message_size, line_length, bare_line_ending, pool_wait, backend_group, session_time, data_rate).',
  labelNames: ['limit'] as const,
  registers: [registry],
});

export const tarpitRefusedTotal = new Counter({
  name: 'smtp_tarpit_tarpit_refused_total',
  help: 'Suspicious clients refused with 421 4.7.0 instead of held because a tarpit cap was reached, by cap (held, per_client, per_group, memory).',
  labelNames: ['cap'] as const,
  registers: [registry],
});

export const configReloadsTotal = new Counter({
  name: 'smtp_tarpit_config_reloads_total',
  help: 'Reloads on SIGHUP, by result (ok, error: the old configuration stays in force).',
  labelNames: ['result'] as const,
  registers: [registry],
});

// Series from the start (zero-series.ts): the outcomes of a reload are known ahead.
zeroSeries(configReloadsTotal, [{ result: 'ok' }, { result: 'error' }]);
