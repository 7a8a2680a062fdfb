/**
 * deploy/prometheus: promtool accepts the rules and both scrape configs, the
 * rules' unit tests (alerts.test.yml) pass, and each check fails on a broken
 * copy, so a green run means something. Every alert carries the annotations a
 * mail admin reads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { requireTool } from '../helpers/require-tool.js';

const DIR = fileURLToPath(new URL('../../deploy/prometheus/', import.meta.url));
const FILES = ['alerts.yml', 'alerts.test.yml', 'prometheus.yml', 'prometheus-kubernetes.yml'];

function promtool(args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('promtool', args, { cwd, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr });
    });
  });
}

/** A scratch copy of deploy/prometheus with `edit` applied to one file. */
function copy(edit?: { file: string; from: string | RegExp; to: string }): string {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-prom-'));
  for (const f of FILES) copyFileSync(join(DIR, f), join(dir, f));
  if (edit) {
    const text = readFileSync(join(dir, edit.file), 'utf8');
    const changed = text.replace(edit.from, edit.to);
    assert.notEqual(changed, text, `the edit to ${edit.file} must change it`);
    writeFileSync(join(dir, edit.file), changed);
  }
  return dir;
}

async function inCopy<T>(edit: Parameters<typeof copy>[0], fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = copy(edit);
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('promtool check rules accepts alerts.yml and rejects a broken expression', async (t) => {
  if (!requireTool(t, 'promtool')) return;
  const ok = await promtool(['check', 'rules', 'alerts.yml'], DIR);
  assert.equal(ok.code, 0, ok.out);
  const bad = await inCopy({ file: 'alerts.yml', from: 'smtp_tarpit_backend_up == 0', to: 'smtp_tarpit_backend_up == ' }, (d) => promtool(['check', 'rules', 'alerts.yml'], d));
  assert.notEqual(bad.code, 0, 'a truncated expression must fail');
});

test('promtool check config accepts the host scrape config and rejects an unknown field', async (t) => {
  if (!requireTool(t, 'promtool')) return;
  const ok = await promtool(['check', 'config', 'prometheus.yml'], DIR);
  assert.equal(ok.code, 0, ok.out);
  const bad = await inCopy({ file: 'prometheus.yml', from: 'metrics_path:', to: 'metric_path:' }, (d) => promtool(['check', 'config', 'prometheus.yml'], d));
  assert.notEqual(bad.code, 0);
});

test('the Kubernetes scrape config passes promtool (its relabelling at least, where promtool lacks Kubernetes discovery)', async (t) => {
  if (!requireTool(t, 'promtool')) return;
  const full = await promtool(['check', 'config', 'prometheus-kubernetes.yml'], DIR);
  if (full.code === 0) return;
  // Debian builds Prometheus without Kubernetes discovery: that one field is
  // unknown to it. Check everything else with a static target in its place.
  assert.match(full.out, /field kubernetes_sd_configs not found/, full.out);
  t.diagnostic('this promtool has no Kubernetes discovery; checked the job with a static target instead');
  const ok = await inCopy({ file: 'prometheus-kubernetes.yml', from: /kubernetes_sd_configs:\n\s+- role: pod/, to: 'static_configs:\n      - targets: ["pod:9325"]' }, (d) =>
    promtool(['check', 'config', 'prometheus-kubernetes.yml'], d),
  );
  assert.equal(ok.code, 0, ok.out);
  const bad = await inCopy({ file: 'prometheus-kubernetes.yml', from: 'regex: smtp-tarpit', to: 'regex: smtp-tarpit(' }, (d) =>
    promtool(['check', 'config', 'prometheus-kubernetes.yml'], d),
  );
  assert.notEqual(bad.code, 0, 'a bad relabel regex must fail');
});

test('promtool test rules: the alerts fire on synthetic series, and a weakened rule fails its test', async (t) => {
  if (!requireTool(t, 'promtool')) return;
  const ok = await promtool(['test', 'rules', 'alerts.test.yml'], DIR);
  assert.equal(ok.code, 0, ok.out);
  const tests = parse(readFileSync(join(DIR, 'alerts.test.yml'), 'utf8')) as { tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }> }> };
  const firing = new Set(tests.tests.flatMap((x) => x.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
  assert.ok(firing.size >= 2, `at least two alerts proven to fire, got ${[...firing].join(', ')}`);
  // The backend alert with a longer `for` no longer fires when the test expects it.
  const bad = await inCopy({ file: 'alerts.yml', from: /(smtp_tarpit_backend_up == 0\n\s+for: )2m/, to: '$110m' }, (d) => promtool(['test', 'rules', 'alerts.test.yml'], d));
  assert.notEqual(bad.code, 0, bad.out);
});

test('every alert has a severity, a summary, a description and a runbook line', () => {
  const rules = parse(readFileSync(join(DIR, 'alerts.yml'), 'utf8')) as {
    groups: Array<{ rules: Array<{ alert: string; labels?: Record<string, string>; annotations?: Record<string, string> }> }>;
  };
  const alerts = rules.groups.flatMap((g) => g.rules);
  const names = alerts.map((a) => a.alert);
  for (const required of ['SmtpTarpitBackendDown', 'SmtpTarpitTrappedErrors', 'SmtpTarpitHeldNearCap', 'SmtpTarpitRefusingClients', 'SmtpTarpitPolicyReloadFailed', 'SmtpTarpitRelayTempfailRatio']) {
    assert.ok(names.includes(required), `missing alert ${required}`);
  }
  for (const a of alerts) {
    assert.match(a.labels?.severity ?? '', /^(critical|warning|info)$/, `${a.alert}: severity`);
    for (const key of ['summary', 'description', 'runbook']) assert.ok((a.annotations?.[key] ?? '').length > 20, `${a.alert}: ${key}`);
  }
});
