/**
 * Series that exist from the start (Prometheus's instrumentation guide): a
 * labelled counter appears only on its first increment, so a fresh proxy
 * exported no `handler_errors_total` at all, its dashboard panels said "No
 * data" and ratio alerts evaluated to nothing. Each part that owns a label's
 * values (stages, verdicts, caps, limits, results) creates its series at 0
 * when its module loads, with these.
 */
import { Counter, Gauge, Histogram, type LabelValues } from 'prom-client';

type Labelled<T extends string> = Counter<T> | Gauge<T> | Histogram<T>;

/** Creates each label set's series at 0, keeping any value it already has. */
export function zeroSeries<T extends string>(metric: Labelled<T>, labelSets: Iterable<LabelValues<T>>): void {
  for (const labels of labelSets) {
    if (metric instanceof Histogram) metric.zero(labels);
    else metric.inc(labels, 0);
  }
}

/** Every combination of the given label values: `{ stage: STAGES, verdict: VERDICTS }`. */
export function labelProduct<T extends string>(values: Readonly<Record<T, readonly string[]>>): LabelValues<T>[] {
  let out: Array<Partial<Record<T, string>>> = [{}];
  for (const [name, list] of Object.entries(values) as Array<[T, readonly string[]]>) {
    out = out.flatMap((partial) => list.map((value) => ({ ...partial, [name]: value })));
  }
  return out;
}
