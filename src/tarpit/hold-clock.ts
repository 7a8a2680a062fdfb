/**
 * A hold's stage clocks (docs/design.md §2): per stage, how long we held our reply and
 * how long the client took for its command, and what each stage is meant to
 * wait under a profile. Fixed size whatever the hold time: one array of
 * 2 × STAGES.length milliseconds and two marks.
 */
import { STAGE_INDEX, STAGES, type Stage } from '../core/stage.js';
import type { TarpitProfile } from '../policy/spec.js';
import type { StageSeconds } from './types.js';

export interface ClockReading {
  /** From the clock's start (the session's) to now. */
  readonly seconds: number;
  readonly heldSeconds: number;
  readonly held: StageSeconds;
  readonly client: StageSeconds;
}

export class StageClock {
  private readonly started: number;
  /** Start (performance.now ms) of the running wait or turn. */
  private mark: number;
  /** Milliseconds per stage: held at [i], client at [STAGES.length + i]. A plain array: smaller than a typed one this size. */
  private readonly times: number[] = new Array<number>(STAGES.length * 2).fill(0);

  constructor() {
    this.started = this.mark = performance.now();
  }

  /** A wait or turn starts now. */
  restart(): void {
    this.mark = performance.now();
  }

  /** The running wait ends: its time is what we held `stage`. */
  held(stage: Stage): void {
    this.add(STAGE_INDEX[stage]);
  }

  /** The running turn ends: its time is what the client took at `stage`. */
  client(stage: Stage): void {
    this.add(STAGES.length + STAGE_INDEX[stage]);
  }

  read(): ClockReading {
    const held: StageSeconds = {};
    const client: StageSeconds = {};
    let heldMs = 0;
    for (let i = 0; i < STAGES.length; i++) {
      const h = this.times[i] ?? 0;
      const c = this.times[STAGES.length + i] ?? 0;
      heldMs += h;
      if (h > 0) held[STAGES[i]!] = seconds(h);
      if (c > 0) client[STAGES[i]!] = seconds(c);
    }
    return { seconds: seconds(performance.now() - this.started), heldSeconds: seconds(heldMs), held, client };
  }

  private add(i: number): void {
    const now = performance.now();
    this.times[i] = (this.times[i] ?? 0) + (now - this.mark);
    this.mark = now;
  }
}

/** Seconds the profile holds the reply that `stage`'s command gets (the banner's at `connect`). */
export function stageDelay(profile: TarpitProfile, stage: Stage): number {
  const d = profile.delays;
  switch (stage) {
    case 'connect':
      return d.banner;
    case 'helo':
      return d.helo;
    case 'mail':
      return d.mail;
    case 'rcpt':
      return d.rcpt;
    case 'data':
      return d.data;
    default:
      return 0;
  }
}

/** Seconds the profile holds replies to NOOP, RSET, VRFY, HELP and unknown commands (no stage of their own). */
export function otherDelay(profile: TarpitProfile): number {
  return profile.delays.other ?? 0;
}

/** `delay` times a factor drawn from [1 - jitter, 1 + jitter]; `random` returns [0, 1) like Math.random. */
export function jittered(delay: number, jitter: number, random: () => number): number {
  if (delay <= 0 || jitter <= 0) return delay;
  return delay * (1 - jitter + 2 * jitter * random());
}

/** Milliseconds to seconds, kept to the millisecond. */
function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}
