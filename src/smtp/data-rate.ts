/**
 * The DATA deadline (limits.minDataRate, limits.dataGrace): a message body
 * must average `minRate` bytes per second, with the first `grace` seconds
 * free. The idle timeout alone measures silence, so a client that sends one
 * byte every few seconds would keep its session, and the backend connection
 * behind it, for as long as it likes (issue 12).
 *
 * Each byte received moves the deadline on by 1/minRate seconds, so it is
 * `start + grace + bytes / minRate`. One timer per body, armed for that
 * deadline and re-armed when it fires early because bytes arrived meanwhile:
 * nothing runs per chunk, which keeps a fast sender's cost where it was.
 */

/** Time and timers, injectable so a test can drive the deadline without waiting. */
export interface RateClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Runs `fn` after `ms`; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
}

const realClock: RateClock = {
  now: () => performance.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    // A body in flight keeps its socket, which keeps the process alive anyway.
    timer.unref();
    return () => clearTimeout(timer);
  },
};

export interface DataRateOptions {
  /** Bytes per second; 0 turns the watch off. */
  readonly minRate: number;
  /** Seconds after the start before the rate counts. */
  readonly grace: number;
  /** Bytes received so far (read when the deadline comes, not pushed per chunk). */
  readonly bytes: () => number;
  /**
   * Whether the body waits on us (the relay is not taking it): such time is
   * not the client's, so the watch adds it to the grace, in STALL_STEP_MS steps.
   */
  readonly stalled?: () => boolean;
  /** The body fell behind: called once, and the watch stops. */
  readonly onSlow: (elapsedSeconds: number, bytes: number) => void;
  readonly clock?: RateClock;
}

/** How often a stalled body is looked at again; each look it is found stalled adds this much to its time. */
export const STALL_STEP_MS = 1000;

export class DataRateWatch {
  private readonly clock: RateClock;
  private start: number;
  private cancel: (() => void) | undefined;
  private stopped = false;

  constructor(private readonly options: DataRateOptions) {
    this.clock = options.clock ?? realClock;
    this.start = this.clock.now();
    if (options.minRate > 0) this.arm();
    else this.stopped = true;
  }

  /** Milliseconds (on the clock) by which `bytes` bytes must have arrived. */
  private deadline(bytes: number): number {
    return this.start + (this.options.grace + bytes / this.options.minRate) * 1000;
  }

  /** The body ended (or failed): no more checks. */
  stop(): void {
    this.stopped = true;
    this.cancel?.();
    this.cancel = undefined;
  }

  private arm(ms = this.deadline(this.options.bytes()) - this.clock.now()): void {
    // At least 1 ms: a deadline already reached is checked on the next turn, never in a loop.
    this.cancel = this.clock.after(Math.max(1, ms), () => this.check());
  }

  private check(): void {
    this.cancel = undefined;
    if (this.stopped) return;
    const bytes = this.options.bytes();
    const now = this.clock.now();
    if (now < this.deadline(bytes)) {
      this.arm();
      return;
    }
    if (this.options.stalled?.() === true) {
      this.start += STALL_STEP_MS;
      this.arm(STALL_STEP_MS);
      return;
    }
    this.stopped = true;
    this.options.onSlow((now - this.start) / 1000, bytes);
  }
}
