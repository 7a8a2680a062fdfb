/**
 * Issue 5's cross-check: every metric the alert rules and the Grafana
 * dashboard query is exported by a running proxy, with the labels the queries
 * use. A real proxy relays a message and sees a client hang up, its /metrics
 * is parsed with a Prometheus text parser, and the names found in
 * deploy/prometheus/alerts.yml and deploy/grafana/smtp-tarpit.json are looked
 * up in it (histogram series via their family's base name).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { registry } from '../../src/metrics/registry.js';
import { familyOf, parseExposition, type MetricFamily } from '../helpers/prometheus-text.js';
import { findTool, inCI } from '../helpers/require-tool.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { policyDir } from '../helpers/policy-dir.js';
import { withProxy } from '../helpers/with-proxy.js';

const ROOT = new URL('../../', import.meta.url);
const read = (path: string): string => readFileSync(fileURLToPath(new URL(path, ROOT)), 'utf8');

/** Labels Prometheus adds (job, instance), le of histogram buckets, and the scrape config's own (mx). */
const TARGET_LABELS = new Set(['job', 'instance', 'le', 'mx', 'namespace', 'pod']);

interface Query {
  readonly where: string;
  readonly expr: string;
}

function alertQueries(): Query[] {
  const rules = parse(read('deploy/prometheus/alerts.yml')) as { groups: Array<{ rules: Array<{ alert?: string; record?: string; expr: string }> }> };
  return rules.groups.flatMap((g) => g.rules.map((r) => ({ where: `alerts.yml ${r.alert ?? r.record ?? '?'}`, expr: r.expr })));
}

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: Panel[];
}

function dashboardQueries(): Query[] {
  const dash = JSON.parse(read('deploy/grafana/smtp-tarpit.json')) as { panels: Panel[]; templating: { list: Array<{ name: string; definition?: string }> } };
  const out: Query[] = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ where: `dashboard "${p.title ?? '?'}"`, expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating.list) if (v.definition) out.push({ where: `dashboard variable $${v.name}`, expr: v.definition });
  return out;
}

const METRIC = /smtp_tarpit_[a-z0-9_]+/g;

/** Label names a query uses: selector keys (`{state="held"}`) and grouping (`by (stage)`, `on (job)`). */
function labelsUsed(expr: string): string[] {
  // Template text ({{ $labels.x }}) never reaches here: only expressions do.
  const names = new Set<string>();
  for (const m of expr.matchAll(/\{([^{}]*)\}/g)) for (const l of m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)) names.add(l[1]!);
  for (const m of expr.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const l of m[1]!.split(',').map((s) => s.trim()).filter(Boolean)) names.add(l);
  }
  return [...names];
}

/** Label names a family's series may carry, from the metric object in the registry. */
function labelNamesOf(family: MetricFamily): string[] {
  const metric = registry.getSingleMetric(family.name) as unknown as { labelNames?: readonly string[] } | undefined;
  return [...(metric?.labelNames ?? [])];
}

/** Problems with `queries` against the exported families; empty when every name and label exists. */
function problems(queries: readonly Query[], families: ReadonlyMap<string, MetricFamily>): string[] {
  const found: string[] = [];
  for (const q of queries) {
    const names = [...new Set(q.expr.match(METRIC) ?? [])];
    if (names.length === 0 && !/\bup\b/.test(q.expr)) found.push(`${q.where}: no smtp_tarpit_ metric in ${q.expr}`);
    const allowed = new Set(TARGET_LABELS);
    for (const n of names) {
      const family = familyOf(n, families);
      if (!family) found.push(`${q.where}: ${n} is not exported`);
      else for (const l of labelNamesOf(family)) allowed.add(l);
    }
    for (const l of labelsUsed(q.expr)) if (!allowed.has(l)) found.push(`${q.where}: label ${l} is on none of ${names.join(', ')}`);
  }
  return found;
}

async function exposition(): Promise<string> {
  const backend = await startBackend();
  try {
    return await withProxy({ backendPort: backend.port, metrics: true }, async (p) => {
      // A relayed message, and a client that hangs up after EHLO.
      const sender = await SmtpClient.open({ port: p.port });
      await sender.command('EHLO sender.example');
      await sender.send('a@sender.example', ['b@dest.example'], wireBody('hello\n'));
      await sender.quit();
      const quitter = await SmtpClient.open({ port: p.port, localAddress: '127.0.0.2' });
      await quitter.command('EHLO quitter.example');
      quitter.socket.destroy();
      await p.waitSessions(2);
      const res = await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`);
      assert.equal(res.status, 200);
      return await res.text();
    });
  } finally {
    await backend.close();
  }
}

test('every metric and label the alerts and the dashboard query is exported by a running proxy', async (t) => {
  const text = await exposition();
  const families = parseExposition(text);

  // The sessions made labelled series: the exposition is not just HELP/TYPE lines.
  const messages = families.get('smtp_tarpit_messages_total');
  assert.ok(messages && messages.metrics.length > 0, 'no smtp_tarpit_messages_total series after a relayed message');
  assert.ok((families.get('smtp_tarpit_hangups_total')?.metrics.length ?? 0) > 0, 'no hang-up series after a client hung up');
  assert.equal(familyOf('smtp_tarpit_stage_duration_seconds_bucket', families)?.type, 'histogram');

  // The queries for rare events (tarpit refusals, trapped errors, reload failures) rely on series at 0.
  const refused = families.get('smtp_tarpit_tarpit_refused_total');
  assert.ok(refused, 'a labelled counter with no events is missing from the exposition');
  assert.equal(refused.type, 'counter');
  assert.deepEqual(
    refused.metrics.map((m) => [(m.labels as Record<string, string>).cap, Number(m.value)]),
    [['held', 0], ['per_client', 0], ['per_group', 0], ['memory', 0]],
    'a series per cap, at 0: no client was refused',
  );

  const queries = [...alertQueries(), ...dashboardQueries()];
  assert.ok(alertQueries().length >= 6 && dashboardQueries().length >= 20, 'the files have fewer queries than expected: did the parsing break?');
  assert.deepEqual(problems(queries, families), []);

  // Promtool reads the same exposition with Prometheus's own parser and lints it.
  const promtool = findTool('promtool');
  if (!promtool) {
    assert.ok(!inCI, 'promtool missing in CI: .ci/run should have installed it');
    t.diagnostic('promtool not installed: skipped `promtool check metrics`');
    return;
  }
  const lint = await new Promise<{ code: number; out: string }>((resolve) => {
    const child = execFile(promtool, ['check', 'metrics'], (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr }));
    child.stdin?.end(text);
  });
  assert.equal(lint.code, 0, `promtool check metrics: ${lint.out}`);
  assert.equal(lint.out.trim(), '', 'no naming complaints');
});

test('a fresh proxy, before any client, exports a series for every metric the alerts and the dashboard query', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  // One DNSBL zone, so the DNS latency panel's series have a zone to be created for.
  const policies = policyDir(t, { policy: { dnsbl: [{ zone: 'bl.fresh.test', weight: 1 }] } });
  const text = await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    const res = await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`);
    return await res.text();
  });
  const families = parseExposition(text);
  const queries = [...alertQueries(), ...dashboardQueries()];
  const empty = new Set<string>();
  for (const q of queries) {
    for (const name of q.expr.match(METRIC) ?? []) {
      const family = familyOf(name, families);
      if (!family || family.metrics.length === 0) empty.add(`${name} (${q.where})`);
    }
  }
  assert.deepEqual([...empty], [], 'series missing before the first client: Grafana would show "No data" and ratio alerts nothing');
  // Zero is what they say.
  assert.equal(families.get('smtp_tarpit_handler_errors_total')?.metrics.every((m) => Number(m.value) === 0), true);
});

test('the cross-check can fail: a misspelt metric, a histogram suffix on a counter, an unknown label', async () => {
  const families = parseExposition(await registry.metrics());
  const bad = (expr: string) => problems([{ where: 'test', expr }], families);
  assert.deepEqual(bad('sum by (stage) (rate(smtp_tarpit_hangups_total[5m]))'), []);
  assert.deepEqual(bad('histogram_quantile(0.9, sum by (le) (rate(smtp_tarpit_held_seconds_bucket[5m])))'), []);
  assert.match(bad('rate(smtp_tarpit_hangup_total[5m])').join(), /smtp_tarpit_hangup_total is not exported/);
  assert.match(bad('rate(smtp_tarpit_hangups_total_bucket[5m])').join(), /not exported/);
  assert.match(bad('sum by (stgae) (rate(smtp_tarpit_hangups_total[5m]))').join(), /label stgae/);
  assert.match(bad('smtp_tarpit_connections_active{stat="held"}').join(), /label stat/);
});
