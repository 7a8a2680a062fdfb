/**
 * The policy engine's metrics (issue 3 §7, docs/design.md §6). Labels are check names,
 * verdicts and results from fixed sets, never client addresses.
 */
import { Counter, Gauge } from 'prom-client';
import { registry } from '../metrics/registry.js';
import { TallyCounter } from '../metrics/tally-counter.js';
import { zeroSeries } from '../metrics/zero-series.js';
import { VERDICTS } from './evidence.js';

export const checksTotal = new TallyCounter({
  name: 'smtp_tarpit_checks_total',
  help: 'Policy checks run, by check and result: hit (gave evidence), miss (nothing found), error (lookup failed or timed out, so no evidence).',
  labelNames: ['check', 'result'] as const,
  registers: [registry],
});

export const verdictsTotal = new TallyCounter({
  name: 'smtp_tarpit_verdicts_total',
  help: 'First verdicts given to new client sessions after the connect-stage checks (a first contact held before it may deliver counts as tarpit).',
  labelNames: ['verdict'] as const,
  registers: [registry],
});

export const escalationsTotal = new Counter({
  name: 'smtp_tarpit_verdict_escalations_total',
  help: 'Verdicts that rose during a session as evidence arrived (e.g. pass to reject after unknown recipients), by the new verdict.',
  labelNames: ['verdict'] as const,
  registers: [registry],
});

export const policyReloadsTotal = new Counter({
  name: 'smtp_tarpit_policy_reloads_total',
  help: 'Policy reloads (SIGHUP or a change in the policy directory), by result: ok, or error (the old policy stays in force).',
  labelNames: ['result'] as const,
  registers: [registry],
});

// Series from the start (src/metrics/zero-series.ts); a session can only rise to a verdict above pass.
zeroSeries(escalationsTotal, VERDICTS.filter((verdict) => verdict !== 'pass').map((verdict) => ({ verdict })));
zeroSeries(policyReloadsTotal, [{ result: 'ok' }, { result: 'error' }]);

/** Like Prometheus' own prometheus_config_last_reload_successful; with workers, the scrape shows the latest. */
export const policyLastReloadTimestamp = new Gauge({
  name: 'smtp_tarpit_policy_last_reload_timestamp_seconds',
  help: 'When the policy was last loaded or a reload was last tried (Unix time, seconds); the load at start counts.',
  registers: [registry],
  aggregator: 'max',
});

/** With workers, 0 if any worker's last reload failed. */
export const policyLastReloadSuccess = new Gauge({
  name: 'smtp_tarpit_policy_last_reload_success',
  help: '1 when the last policy load or reload succeeded, 0 when it failed and the previous policy stayed in force.',
  registers: [registry],
  aggregator: 'min',
});

/** Records one load or reload attempt of the policy directory. */
export function recordPolicyLoad(ok: boolean, at: number = Date.now()): void {
  policyLastReloadTimestamp.set(at / 1000);
  policyLastReloadSuccess.set(ok ? 1 : 0);
}
