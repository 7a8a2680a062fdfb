/**
 * deploy/grafana/smtp-tarpit.json: a dashboard Grafana imports anywhere (the
 * data source is a variable, never a fixed uid), panels laid out without
 * overlap, and the views issue 5 asks for present. Whether its metrics exist
 * is test/deploy/metrics-crosscheck.test.ts's job.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface Target {
  refId?: string;
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  fieldConfig?: { defaults?: { custom?: { stacking?: { mode?: string } } } };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; type: string; query?: unknown; datasource?: { uid?: string } }> };
}

const DASH = JSON.parse(readFileSync(fileURLToPath(new URL('../../deploy/grafana/smtp-tarpit.json', import.meta.url)), 'utf8')) as Dashboard;
const queryPanels = DASH.panels.filter((p) => p.type !== 'row');

test('the data source is a variable everywhere, so the dashboard imports into any Grafana', () => {
  const ds = DASH.templating.list.find((v) => v.type === 'datasource');
  assert.ok(ds, 'no data source variable');
  assert.equal(ds.query, 'prometheus');
  const ref = `\${${ds.name}}`;
  for (const p of queryPanels) {
    assert.equal(p.datasource?.uid, ref, `panel "${p.title}"`);
    for (const t of p.targets ?? []) assert.equal(t.datasource?.uid ?? ref, ref, `panel "${p.title}" target ${t.refId ?? '?'}`);
  }
  for (const v of DASH.templating.list.filter((x) => x.type === 'query')) assert.equal(v.datasource?.uid, ref, `variable ${v.name}`);
  assert.doesNotMatch(JSON.stringify(DASH), /"uid":\s*"(?!\$\{|smtp-tarpit"|-- Grafana --")[^"]*"/, 'a fixed data source uid');
});

test('panels have unique ids, a query each with a unique refId, and do not overlap on the 24-column grid', () => {
  const ids = DASH.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length, 'duplicate panel ids');
  for (const p of queryPanels) {
    assert.ok((p.targets ?? []).length > 0, `panel "${p.title}" has no query`);
    const refs = (p.targets ?? []).map((t) => t.refId);
    assert.equal(new Set(refs).size, refs.length, `panel "${p.title}": duplicate refIds`);
    for (const t of p.targets ?? []) assert.match(t.expr ?? '', /smtp_tarpit_/, `panel "${p.title}" ${t.refId ?? '?'}`);
  }
  const cells = new Map<string, string>();
  for (const p of DASH.panels) {
    const { x, y, w, h } = p.gridPos;
    assert.ok(x >= 0 && w > 0 && x + w <= 24, `panel "${p.title}" is off the grid`);
    for (let i = x; i < x + w; i++) {
      for (let j = y; j < y + h; j++) {
        const other = cells.get(`${i},${j}`);
        assert.equal(other, undefined, `panels "${p.title}" and "${other}" overlap`);
        cells.set(`${i},${j}`, p.title);
      }
    }
  }
});

test('the views issue 5 asks for are there', () => {
  const has = (what: string, metric: RegExp, extra?: (p: Panel) => boolean) => {
    const found = queryPanels.filter((p) => (p.targets ?? []).some((t) => metric.test(t.expr ?? '')) && (extra?.(p) ?? true));
    assert.ok(found.length > 0, `no panel for ${what}`);
  };
  has('connections by result', /by \(result\) \(rate\(smtp_tarpit_connections_total/);
  has('held now', /smtp_tarpit_connections_active\{[^}]*state="held"/);
  has('hang-ups by stage, stacked (the signature view)', /by \(stage\) \(rate\(smtp_tarpit_hangups_total/, (p) => p.fieldConfig?.defaults?.custom?.stacking?.mode === 'normal');
  has('hang-ups by verdict', /by \(verdict\) \(rate\(smtp_tarpit_hangups_total/);
  has('held-time quantiles', /histogram_quantile\(.*smtp_tarpit_held_seconds_bucket/);
  has('stage duration by stage', /histogram_quantile\(0\.95, sum by \(le, stage\) \(rate\(smtp_tarpit_stage_duration_seconds_bucket/);
  has('relay results', /by \(result\) \(rate\(smtp_tarpit_messages_total/);
  has('backend reply latency', /smtp_tarpit_backend_reply_seconds_bucket/);
  has('backend pool by state', /by \(state\) \(smtp_tarpit_backend_pool_connections/);
  has('backend pool wait', /smtp_tarpit_backend_pool_wait_seconds_bucket/);
  has('trapped errors by stage', /by \(stage\) \(rate\(smtp_tarpit_handler_errors_total/);
  has('DNS lookup latency', /smtp_tarpit_dns_lookup_seconds_bucket/);
  has('policy reloads', /smtp_tarpit_policy_reloads_total/);
  has('event-loop lag', /smtp_tarpit_nodejs_eventloop_lag_p99_seconds/);
  has('RSS', /smtp_tarpit_process_resident_memory_bytes/);
});
