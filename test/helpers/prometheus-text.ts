/**
 * Parses Prometheus text exposition with a real parser
 * (parse-prometheus-text-format) instead of a regex, for tests that ask which
 * metric families a proxy exports and of what type.
 *
 * Trust it for family names, HELP and TYPE (a family with HELP/TYPE and no
 * series yet comes back with no metrics) and for unlabelled values. Not for
 * labelled histograms: version 1.1.1 folds every label set of a histogram
 * into one and drops its other labels, _sum and _count.
 */
import { createRequire } from 'node:module';

export type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: FamilyType;
  /** Samples as the parser gives them; empty for a family with no series yet. */
  readonly metrics: ReadonlyArray<Readonly<Record<string, unknown>>>;
}

interface RawFamily {
  name: string;
  help: string;
  type: string;
  metrics: Array<Record<string, unknown>>;
}

// The package ships CommonJS without type declarations.
const parsePrometheusTextFormat = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => RawFamily[];

/** Throws on a line the parser cannot read. */
export function parseExposition(text: string): Map<string, MetricFamily> {
  const families = new Map<string, MetricFamily>();
  for (const f of parsePrometheusTextFormat(text)) {
    if (families.has(f.name)) throw new Error(`metric family ${f.name} appears twice`);
    families.set(f.name, { name: f.name, help: f.help, type: f.type.toLowerCase() as FamilyType, metrics: f.metrics });
  }
  return families;
}

const SUFFIXES = ['_bucket', '_sum', '_count'] as const;

/**
 * The family a series name in a query belongs to: itself, or for
 * `x_bucket`/`x_sum`/`x_count` the histogram or summary `x`. Undefined when
 * no exported family has it.
 */
export function familyOf(series: string, families: ReadonlyMap<string, MetricFamily>): MetricFamily | undefined {
  const exact = families.get(series);
  if (exact) return exact;
  for (const suffix of SUFFIXES) {
    if (!series.endsWith(suffix)) continue;
    const base = families.get(series.slice(0, -suffix.length));
    if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base;
  }
  return undefined;
}
