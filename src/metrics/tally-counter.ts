/**
 * A prom-client Counter for the per-connection path. prom-client's `inc()`
 * turns the label set into a string key and looks it up on every call, bound
 * children (`labels()`) included: about 150 ns each, and a vetted connection
 * bumps some fifteen counters (bench/verdict.ts: 10 % of a warm vet).
 * A tally is bound to one label set once and counts in a plain number; the
 * counts reach the counter whenever it is read (a scrape, `get()`), so what
 * /metrics shows is unchanged, except that every tallied label set appears
 * from the start, at 0 (a label set bound ahead is a known one). (`remove()`
 * of a tallied label set would come back at the next read with whatever was
 * tallied since: none of ours is ever removed.)
 */
import { Counter, type LabelValues, type MetricObjectWithValues, type MetricValue } from 'prom-client';

/** Counts one label set of a TallyCounter. */
export interface Tally {
  inc(): void;
}

export class TallyCounter<T extends string = string> extends Counter<T> {
  readonly #tallies: { readonly labels: LabelValues<T>; count: number }[] = [];

  /** A tally for `labels`; bind it once (module load, or a memo per label set), not per increment. */
  tally(labels: LabelValues<T>): Tally {
    const tally = { labels, count: 0 };
    this.#tallies.push(tally);
    return {
      inc: () => {
        tally.count++;
      },
    };
  }

  override async get(): Promise<MetricObjectWithValues<MetricValue<T>>> {
    for (const tally of this.#tallies) {
      // At 0 too: a tally's label set is known ahead, so its series exists from the start (zero-series.ts).
      this.inc(tally.labels, tally.count);
      tally.count = 0;
    }
    return super.get();
  }

  override reset(): void {
    // prom-client's constructor calls reset() before this class's fields exist.
    if (#tallies in this) for (const tally of this.#tallies) tally.count = 0;
    super.reset();
  }
}
