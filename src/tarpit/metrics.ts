/**
 * Per-stage timing (issue 4 item 2, DESIGN §2 and §6): where each session
 * spent its time, whether we held it, the client took it or the backend did,
 * and the stage in which the client hung up. Held sessions (the tarpit's
 * hold) and relayed ones (smtp-server's hooks) report the same shape, so one
 * log query and one dashboard cover both paths.
 */
import { Counter, Histogram } from 'prom-client';
import { STAGES, type Stage } from '../core/stage.js';
import { registry } from '../metrics/registry.js';
import type { Verdict } from '../policy/evidence.js';
import type { StageSeconds } from './types.js';

/**
 * Bots give up within seconds to a minute, real MTAs wait minutes (RFC 5321
 * §4.5.3.2) and a hold may last up to 30 min: the buckets resolve 1 s to 30
 * min, with a few below a second for relayed sessions.
 */
export const HOLD_BUCKETS = [0.01, 0.1, 0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200, 1800];

export const stageDurationSeconds = new Histogram({
  name: 'smtp_tarpit_stage_duration_seconds',
  help: 'Time a session spent in each stage it reached (client + held + backend), by stage and the session\'s final verdict.',
  labelNames: ['stage', 'verdict'] as const,
  buckets: HOLD_BUCKETS,
  registers: [registry],
});

export const hangupsTotal = new Counter({
  name: 'smtp_tarpit_hangups_total',
  help: 'Sessions the client closed without QUIT, by the stage it was in and the session\'s final verdict.',
  labelNames: ['stage', 'verdict'] as const,
  registers: [registry],
});

export const heldSeconds = new Histogram({
  name: 'smtp_tarpit_held_seconds',
  help: 'Total time we deliberately held each held session\'s replies, by its final verdict.',
  labelNames: ['verdict'] as const,
  buckets: HOLD_BUCKETS,
  registers: [registry],
});

/** One stage's seconds: what the client took, what we held, what the backend took. */
export interface StageTime {
  readonly client: number;
  readonly held: number;
  readonly backend: number;
}

/** Only stages the session reached appear, in STAGES order. */
export type StageTimes = Partial<Record<Stage, StageTime>>;

/** A held session's per-stage times from the hold's summary (the hold never talks to a backend). */
export function heldStageTimes(held: StageSeconds, client: StageSeconds): StageTimes {
  const out: Partial<Record<Stage, StageTime>> = {};
  for (const stage of STAGES) {
    const h = held[stage];
    const c = client[stage];
    if (h === undefined && c === undefined) continue;
    out[stage] = { client: round(c ?? 0), held: round(h ?? 0), backend: 0 };
  }
  return out;
}

export interface SessionTiming {
  readonly verdict: Verdict;
  readonly stages: StageTimes;
  /** The stage the client hung up in, if it did. */
  readonly hangup?: Stage | undefined;
  /** Total held seconds, for held sessions only (relayed sessions are not observed in held_seconds). */
  readonly held?: number | undefined;
}

/** Observes one finished session in the stage metrics. Called once per session, at its close. */
export function recordSessionTiming(timing: SessionTiming): void {
  const { verdict } = timing;
  for (const stage of STAGES) {
    const t = timing.stages[stage];
    if (t) stageDurationSeconds.observe({ stage, verdict }, t.client + t.held + t.backend);
  }
  if (timing.hangup !== undefined) hangupsTotal.inc({ stage: timing.hangup, verdict });
  if (timing.held !== undefined) heldSeconds.observe({ verdict }, timing.held);
}

/** Seconds with 3 decimals, as the session log line carries them. */
export function round(seconds: number): number {
  return Number(seconds.toFixed(3));
}
