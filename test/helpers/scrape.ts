/**
 * Reads the proxy's /metrics for assertions: a sample is found by name and
 * any subset of its labels, whatever order prom-client prints them in.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export class Scrape {
  constructor(readonly samples: readonly Sample[]) {}

  /** The sum over every sample named `name` whose labels include `labels`. */
  sum(name: string, labels: Readonly<Record<string, string>> = {}): number {
    let total = 0;
    for (const s of this.samples) {
      if (s.name !== name) continue;
      if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) total += s.value;
    }
    return total;
  }

  has(name: string): boolean {
    return this.samples.some((s) => s.name === name);
  }
}

/** How much the samples named `name` with `labels` grew from `before` to `after`. */
export function delta(before: Scrape, after: Scrape, name: string, labels: Readonly<Record<string, string>> = {}): number {
  return after.sum(name, labels) - before.sum(name, labels);
}

export async function scrape(metricsPort: number | undefined): Promise<Scrape> {
  if (metricsPort === undefined) throw new Error('the metrics listener is off (startProxy with metrics: true)');
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parse(await res.text());
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parse(text: string): Scrape {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return new Scrape(samples);
}
