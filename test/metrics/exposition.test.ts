/**
 * /metrics of a running proxy after real traffic (issue 5 item 1, single
 * process): it parses as Prometheus text with a real parser, every metric the
 * README's metrics paragraph names is exported with the type its name
 * implies, every family has HELP text, and no label value is an address.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { registry } from '../../src/metrics/registry.js';
import { policyDir } from '../helpers/policy-dir.js';
import { parseExposition, type FamilyType, type MetricFamily } from '../helpers/prometheus-text.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy, sessionOf } from '../helpers/with-proxy.js';

const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** The metric names in the README's paragraph that lists them (it starts with `smtp_tarpit_connections_total{result}`). */
function documentedMetrics(): string[] {
  const paragraph = readFileSync(README, 'utf8')
    .split(/\n\s*\n/)
    .find((p) => p.includes('`smtp_tarpit_connections_total{result}`'));
  assert.ok(paragraph, "README.md has no paragraph listing `smtp_tarpit_connections_total{result}`");
  const names = [...paragraph.matchAll(/`(smtp_tarpit_[a-z0-9_]+)/g)].map((m) => m[1]!);
  assert.ok(names.length >= 20, `only ${names.length} metric names found in the README paragraph`);
  return [...new Set(names)];
}

/**
 * The type a name implies: `_total` a counter; `_seconds` a histogram unless
 * it is a point in time (`_timestamp_seconds`, `_start_time_seconds`) or one
 * of prom-client's event-loop lag gauges (`_eventloop_lag_p99_seconds`, …);
 * everything else (`_bytes`, `_up`, `_active`, `_entries`, …) a gauge.
 */
function impliedType(name: string): FamilyType {
  if (name.endsWith('_total')) return 'counter';
  const pointOrLag = /_(timestamp|start_time)_seconds$|_eventloop_lag(_[a-z0-9]+)?_seconds$/.test(name);
  if (name.endsWith('_seconds') && !pointOrLag) return 'histogram';
  return 'gauge';
}

/** An address, alone or inside a longer value (`127.0.0.1:25`, `[::1]`). */
function looksLikeAddress(value: string): boolean {
  if (isIP(value) !== 0) return true;
  if (/(^|[^\d.])\d{1,3}(\.\d{1,3}){3}([^\d.]|$)/.test(value)) return true;
  return value.split(/[^0-9A-Fa-f:.]+/).some((token) => token.includes(':') && isIP(token) === 6);
}

test('/metrics after traffic: a real parser reads it, the README metrics exist with the implied type, HELP everywhere, no addresses in labels', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const policies = policyDir(t, {
    allow: ['127.0.0.1'],
    block: ['127.0.61.0/24'],
    policy: { profiles: { tarpit: { delays: { banner: 0.05, helo: 0.05, mail: 0.05, rcpt: 0.05, data: 0.05 } } } },
  });
  await withProxy({ backendPort: backend.port, metrics: true, config: { policies } }, async (p) => {
    // A relayed message from an allow-listed client.
    const clean = await SmtpClient.open({ port: p.port, localAddress: '127.0.0.1' });
    assert.equal((await clean.command('EHLO clean.example')).code, 250);
    assert.equal((await clean.send('a@clean.example', ['b@dest.example'], wireBody('Subject: exposition\n\nhello\n'))).end?.code, 250);
    await clean.quit();
    // A blocked client held by the tarpit that hangs up after EHLO.
    const bot = await SmtpClient.open({ port: p.port, localAddress: '127.0.61.7' });
    bot.write('EHLO bot.example\r\n');
    await bot.read();
    bot.destroy();
    assert.equal((await sessionOf(p, '127.0.61.7')).hangup !== undefined, true);
    await sessionOf(p, '127.0.0.1');

    const res = await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const families = parseExposition(await res.text());

    const problems: string[] = [];
    const documented = documentedMetrics();
    for (const name of documented) {
      const family = families.get(name);
      if (family === undefined) problems.push(`${name}: documented in README.md, not exported`);
      else if (family.type !== impliedType(name)) problems.push(`${name}: exported as ${family.type}, its name implies ${impliedType(name)}`);
    }
    // The gauges `status` reads, whether or not the README lists them yet.
    const gauges = ['smtp_tarpit_sessions_stage', 'smtp_tarpit_held_by_profile', 'smtp_tarpit_tarpit_cap', 'smtp_tarpit_policy_last_reload_timestamp_seconds', 'smtp_tarpit_policy_last_reload_success'];
    for (const name of gauges) if (families.get(name)?.type !== 'gauge') problems.push(`${name}: not exported as a gauge`);

    for (const family of families.values()) {
      if (!family.name.startsWith('smtp_tarpit_')) problems.push(`${family.name}: no smtp_tarpit_ prefix`);
      if (family.help.trim().length < 10) problems.push(`${family.name}: no HELP text worth the name (${JSON.stringify(family.help)})`);
      if (family.type !== impliedType(family.name)) problems.push(`${family.name}: ${family.type}, its name implies ${impliedType(family.name)}`);
    }
    assert.deepEqual(problems, []);

    // The traffic shows up: the families are not just declared.
    assert.ok(sampleValue(families.get('smtp_tarpit_messages_total'), { result: 'relayed' }) >= 1);
    assert.ok(sampleValue(families.get('smtp_tarpit_hangups_total'), { verdict: 'tarpit' }) >= 1);
    assert.equal(sampleValue(families.get('smtp_tarpit_policy_last_reload_success'), {}), 1);

    // Labels: what the parser kept, and every label set of every metric as the
    // registry holds them (the parser folds a labelled histogram's label sets
    // together, so it alone would miss some).
    const values: string[] = [];
    for (const family of families.values()) for (const m of family.metrics) values.push(...Object.values((m.labels ?? {}) as Record<string, string>));
    for (const metric of await registry.getMetricsAsJSON()) for (const v of metric.values) values.push(...Object.values(v.labels).map(String));
    assert.ok(values.includes('tarpit') && values.includes('relayed'), 'label values were collected');
    assert.deepEqual(values.filter(looksLikeAddress), []);
  });
});

test('the implied types: counters end in _total, durations are histograms, points in time and lag gauges are gauges', () => {
  assert.equal(impliedType('smtp_tarpit_hangups_total'), 'counter');
  assert.equal(impliedType('smtp_tarpit_held_seconds'), 'histogram');
  assert.equal(impliedType('smtp_tarpit_policy_last_reload_timestamp_seconds'), 'gauge');
  assert.equal(impliedType('smtp_tarpit_nodejs_eventloop_lag_p99_seconds'), 'gauge');
  assert.equal(impliedType('smtp_tarpit_process_resident_memory_bytes'), 'gauge');
});

test('the address test catches addresses, bare or inside a value, and passes versions and stage names', () => {
  for (const v of ['127.0.61.7', '127.0.0.1:25', '::1', '[2001:db8::1]:25', 'client 198.51.100.7']) assert.equal(looksLikeAddress(v), true, v);
  for (const v of ['v20.20.2', '0.005', 'helo', 'per_client', '+Inf', 'first-contact']) assert.equal(looksLikeAddress(v), false, v);
});

function sampleValue(family: MetricFamily | undefined, labels: Readonly<Record<string, string>>): number {
  let sum = 0;
  for (const m of family?.metrics ?? []) {
    const have = (m.labels ?? {}) as Record<string, string>;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m.value);
  }
  return sum;
}
