/**
 * A session's score (docs/design.md §2): evidence adds up as it arrives, stage by
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
import { REASON_CLASSES, type Evidence, type ReasonClass, type Verdict } from './evidence.js';
import { type Policy, verdictFor } from './spec.js';

/** Evidence kept for logs and `explain`; the score counts everything beyond it. */
export const MAX_EVIDENCE = 32;

type Thresholds = Policy['thresholds'];

const CLASS_INDEX = Object.fromEntries(REASON_CLASSES.map((c, i) => [c, i])) as Readonly<Record<ReasonClass, number>>;
const NO_EVIDENCE: readonly Evidence[] = [];

export class Score {
  readonly #thresholds: Thresholds;
  // Allocated on first use and sized by what arrives: a held client's Score
  // lives as long as its hold, tens of thousands at once (issue 4's budget).
  #evidence: Evidence[] | undefined;
  #omitted = 0;
  #total = 0;
  /**
   * Highest total after any weighted evidence; undefined before the first.
   * Not simply max(0, …): a policy may put a threshold at or below 0 ("hold
   * everyone unless a DNSWL vouches"), and a DNSWL answer that comes first
   * must still be able to keep the client below it.
   */
  #peak: number | undefined;
  /** Positive weight per reason class (REASON_CLASSES order), for the client-visible reason. */
  #byClass: number[] | undefined;
  #leader: ReasonClass | undefined;
  #leaderWeight = 0;

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
    if (this.#evidence === undefined) this.#evidence = [evidence];
    else if (this.#evidence.length < MAX_EVIDENCE) this.#evidence.push(evidence);
    else this.#omitted++;
    const weight = evidence.weight;
    if (weight !== 0 && Number.isFinite(weight)) {
      this.#total += weight;
      if (this.#peak === undefined || this.#total > this.#peak) this.#peak = this.#total;
      if (weight > 0) {
        const byClass = (this.#byClass ??= new Array<number>(REASON_CLASSES.length).fill(0));
        const i = CLASS_INDEX[evidence.class];
        const sum = (byClass[i] ?? 0) + weight;
        byClass[i] = sum;
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
    return this.#evidence ?? NO_EVIDENCE;
  }

  /** Evidence counted but not kept in `evidence`. */
  get omitted(): number {
    return this.#omitted;
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
