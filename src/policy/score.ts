/**
 * A session's score (DESIGN §2): evidence adds up as it arrives, stage by
 * stage, and the thresholds turn the score into a verdict that may escalate
 * mid-session (an unknown-recipient burst turns `pass` into `reject`).
 *
 * Verdicts only escalate. The verdict follows the highest score the session
 * has reached, not the current sum: a negative weight that arrives before an
 * escalation lowers what later evidence must overcome (a DNSWL listing known
 * at connect offsets a weak HELO), but once a threshold was crossed, evidence
 * arriving later cannot take it back. Checks finish in no fixed order: a slow
 * DNSWL answer landing after the client pregreeted must not un-reject a
 * client that already showed itself a bot, and a client already told 5xx or
 * held must not be relayed on the next command.
 */
import type { Evidence, ReasonClass, Verdict } from './evidence.js';
import { type Policy, verdictFor } from './spec.js';

/** Evidence kept for logs and `explain`; the score counts everything beyond it. */
export const MAX_EVIDENCE = 32;

type Thresholds = Policy['thresholds'];

export class Score {
  readonly #thresholds: Thresholds;
  readonly #evidence: Evidence[] = [];
  #omitted = 0;
  #total = 0;
  /**
   * Highest total after any weighted evidence; undefined before the first.
   * Not simply max(0, …): a policy may put a threshold at or below 0 ("hold
   * everyone unless a DNSWL vouches"), and a DNSWL answer that comes first
   * must still be able to keep the client below it.
   */
  #peak: number | undefined;
  /** Positive weight per reason class, for the client-visible reason; at most one entry per class. */
  readonly #byClass = new Map<ReasonClass, number>();
  #leader: ReasonClass | undefined;
  #leaderWeight = 0;
  /** Check names seen, so once-per-session checks are added once. Bounded by the policy's check names. */
  readonly #checks = new Set<string>();

  constructor(thresholds: Thresholds) {
    this.#thresholds = thresholds;
  }

  /**
   * Records `evidence` and returns the verdict before and after it, under the
   * thresholds given at construction. Weight-0 evidence (an allowlist match)
   * is recorded but changes nothing.
   */
  add(evidence: Evidence): { before: Verdict; after: Verdict } {
    const before = this.verdict();
    this.#checks.add(evidence.check);
    if (this.#evidence.length < MAX_EVIDENCE) this.#evidence.push(evidence);
    else this.#omitted++;
    const weight = evidence.weight;
    if (weight !== 0 && Number.isFinite(weight)) {
      this.#total += weight;
      if (this.#peak === undefined || this.#total > this.#peak) this.#peak = this.#total;
      if (weight > 0) {
        const sum = (this.#byClass.get(evidence.class) ?? 0) + weight;
        this.#byClass.set(evidence.class, sum);
        // Sums only grow, so the leader changes only when passed outright.
        if (sum > this.#leaderWeight || evidence.class === this.#leader) {
          this.#leader = evidence.class;
          this.#leaderWeight = sum;
        }
      }
    }
    return { before, after: this.verdict() };
  }

  /** The sum of every weight added. */
  get total(): number {
    return this.#total;
  }

  /** The highest the total has been since weighted evidence arrived (0 before): what the verdict follows. */
  get peak(): number {
    return this.#peak ?? this.#total;
  }

  /** The first MAX_EVIDENCE pieces of evidence, in arrival order. */
  get evidence(): readonly Evidence[] {
    return this.#evidence;
  }

  /** Evidence counted but not kept in `evidence`. */
  get omitted(): number {
    return this.#omitted;
  }

  /** Whether evidence from `check` was added (for checks that count once per session). */
  has(check: string): boolean {
    return this.#checks.has(check);
  }

  /** The verdict under `thresholds` (default: the session's policy), from the peak score. */
  verdict(thresholds: Thresholds = this.#thresholds): Verdict {
    return verdictFor(this.peak, thresholds);
  }

  /**
   * The reason class whose positive evidence added the most, for the reply a
   * refused client sees (REASON_TEXT). A class that ties the leader does not
   * take over: the reason a client is told does not flip on a late equal.
   * Undefined when nothing counted against the client.
   */
  strongestClass(): ReasonClass | undefined {
    return this.#leader;
  }
}
