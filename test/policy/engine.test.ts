/**
 * PolicyEngine.vet against a real dnsmasq (test/helpers/dns-server.ts): a
 * client vetted with every DNS answer cached (the synchronous path: no
 * promise per lookup) must get exactly what the same client got when every
 * answer came from the resolver — evidence in the same order, score, verdict,
 * client name, the zones' report, and the same counts in
 * smtp_tarpit_checks_total and smtp_tarpit_verdicts_total.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { PolicyEngine, type PolicyState } from '../../src/policy/engine.js';
import { DnsClient } from '../../src/policy/dns/dns-client.js';
import { dnsCacheTotal } from '../../src/policy/dns/metrics.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { checksTotal, verdictsTotal } from '../../src/policy/metrics.js';
import { AllowlistCache } from '../../src/state/allowlist-cache.js';
import { HarvestWindow } from '../../src/state/harvest-window.js';
import { RateLimiter } from '../../src/state/rate-limiter.js';
import { sharedDnsServer, TEST_DNS } from '../helpers/dns-server.js';
import { policyDir } from '../helpers/policy-dir.js';
import { requireTool, type TestContext } from '../helpers/require-tool.js';

const server = sharedDnsServer();
const { listed, rdns } = TEST_DNS;
const US = { hostname: 'tarpit.test', addresses: ['127.0.0.1'] };

async function engine(t: TestContext, rate: Record<string, unknown> = {}): Promise<{ engine: PolicyEngine; state: PolicyState } | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  const dir = policyDir(t, {
    policy: {
      dnsbl: [
        { zone: TEST_DNS.bl, weight: 6, answers: ['127.0.0.2-127.0.0.11'], timeout: 1 },
        { zone: `${TEST_DNS.refused}.`, weight: 3, answers: [], timeout: 1 },
      ],
      dnswl: [{ zone: TEST_DNS.wl, weight: -5, answers: ['127.0.10.0/24'], timeout: 1 }],
      rdns: { missing: 2, unconfirmed: 1 },
      firstContact: { enabled: true },
      rate,
    },
    allow: ['127.0.5.0/24', '2001:db8:5::/48'],
    block: ['127.0.1.2', '2001:db8::/64'],
  });
  const state: PolicyState = {
    dns: new DnsClient({ servers: [(await server.get()).address], timeout: 1 }),
    allowlist: new AllowlistCache({ ttl: 3600, maxEntries: 100 }),
    rates: new RateLimiter(),
    harvest: new HarvestWindow(),
  };
  return { engine: new PolicyEngine(loadPolicyDir(dir), state, US), state };
}

/** Every series of the counters a vet bumps, as `name{labels} value`. */
async function counts(): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const metric of [checksTotal, verdictsTotal, dnsCacheTotal]) {
    const { name, values } = await metric.get();
    for (const v of values) out.set(`${name}${JSON.stringify(v.labels)}`, v.value);
  }
  return out;
}

function delta(before: Map<string, number>, after: Map<string, number>, prefix: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) if (k.startsWith(prefix) && v !== (before.get(k) ?? 0)) out[k] = v - (before.get(k) ?? 0);
  return out;
}

async function vetted(e: PolicyEngine, address: string) {
  const { session, report } = await e.vet(address, { needName: true, count: false });
  return { summary: session.summary(), verdict: session.verdict, held: session.held, trusted: session.trusted, firstContact: session.firstContact, name: session.clientName, report };
}

const CLIENTS = [
  listed.ipv4,
  `::ffff:${listed.ipv4}`,
  listed.ipv6,
  listed.errorCode,
  listed.ttl0, // TTL 0: never cached, so its second vet waits on the resolver again (the asynchronous path)
  listed.allowlisted,
  rdns.confirmed.address,
  rdns.confirmed.ipv6,
  rdns.unconfirmed.address,
  rdns.missing,
  rdns.several.address,
  '127.0.5.9', // allow.cidr
  '2001:db8:5::1',
  'not-an-address', // a Unix socket peer: no list, no DNS name
];

test('a vet with every answer cached gives what the vet that asked the resolver gave, metrics included', async (t) => {
  const setup = await engine(t);
  if (!setup) return;
  for (const address of CLIENTS) {
    const c0 = await counts();
    const cold = await vetted(setup.engine, address);
    const c1 = await counts();
    const warm = await vetted(setup.engine, address);
    const c2 = await counts();
    assert.deepEqual(warm, cold, address);
    for (const prefix of ['smtp_tarpit_checks_total', 'smtp_tarpit_verdicts_total']) {
      assert.deepEqual(delta(c1, c2, prefix), delta(c0, c1, prefix), `${address}: ${prefix}`);
    }
    // Only what is never cached goes to the resolver again: failures (the refused zone) and TTL-0
    // answers (listed.ttl0's zone answer and the forward A of its PTR name, both from one TTL-0 record).
    const uncached = warm.report.lookups.filter((l) => l.result === 'error' || l.result === 'timeout').length + (address === listed.ttl0 ? 2 : 0);
    const misses = 'smtp_tarpit_dns_cache_total{"result":"miss"}';
    assert.equal((c2.get(misses) ?? 0) - (c1.get(misses) ?? 0), uncached, `${address}: lookups that went to the resolver the second time`);
  }
});

test('the outcomes themselves: DNSBL, DNSWL, FCrDNS, block and allow lists, first contact', async (t) => {
  const setup = await engine(t);
  if (!setup) return;
  const listedV4 = await vetted(setup.engine, listed.ipv4);
  assert.deepEqual(listedV4.summary.reasons, ['dnsbl +6: listed on bl.test (127.0.0.2)', 'first-contact: not seen before: held before it may deliver']);
  assert.equal(listedV4.verdict, 'tarpit');
  assert.equal(listedV4.name, `2.0.0.127.${TEST_DNS.bl}`, 'its PTR leads back to it');
  assert.deepEqual(
    listedV4.report.lookups.map((l) => [l.zone, l.result]),
    [
      [TEST_DNS.bl, 'listed'],
      [TEST_DNS.refused, 'error'],
      [TEST_DNS.wl, 'not-listed'],
    ],
  );
  const mapped = await vetted(setup.engine, `::ffff:${listed.errorCode}`);
  assert.equal(mapped.report.lookups[0]?.query, `4.0.0.127.${TEST_DNS.bl}`, 'IPv4-mapped asked as IPv4');
  assert.deepEqual(mapped.summary.reasons, [`rdns +2: no reverse DNS (PTR) for ::ffff:${listed.errorCode}`, 'first-contact: not seen before: held before it may deliver'], 'the evidence names the address as the socket gave it; the error-code answer does not count');

  const v6 = await vetted(setup.engine, listed.ipv6);
  assert.equal(v6.summary.score, 5 + 6 + 2, 'block.cidr /64, bl.test by nibbles, no PTR');
  assert.equal(v6.verdict, 'reject');
  assert.match(v6.summary.reasons[0] ?? '', /^block \+5: listed in .*block\.cidr:3 \(2001:db8::\/64\)$/);

  const vouched = await vetted(setup.engine, listed.allowlisted);
  assert.equal(vouched.summary.score, -5 + 2);
  assert.equal(vouched.firstContact, false, 'a DNSWL listing vouches: no first-contact hold');

  const confirmed = await vetted(setup.engine, rdns.confirmed.address);
  assert.equal(confirmed.name, rdns.confirmed.name);
  assert.equal(confirmed.summary.score, 0);
  assert.equal(confirmed.held, true, 'held as a first contact');

  const blocked = await vetted(setup.engine, rdns.unconfirmed.address);
  assert.equal(blocked.summary.score, 5 + 1, 'block.cidr and an unconfirmed PTR');
  assert.match(blocked.summary.reasons[0] ?? '', /^block \+5: listed in .*block\.cidr:2 \(127\.0\.1\.2\)$/);

  const trusted = await vetted(setup.engine, '2001:db8:5::1');
  assert.equal(trusted.trusted, true);
  assert.deepEqual(trusted.report.lookups, []);
  assert.match(trusted.summary.reasons[0] ?? '', /^allow: listed in .*allow\.cidr:3 \(2001:db8:5::\/48\)$/);
});

test('a client in the allowlist cache skips the DNS checks but still gets its name', async (t) => {
  const setup = await engine(t);
  if (!setup) return;
  setup.state.allowlist.add(`::ffff:${rdns.confirmed.address}`, 'test');
  for (let i = 0; i < 2; i++) {
    const out = await vetted(setup.engine, rdns.confirmed.address);
    assert.equal(out.report.cached, true);
    assert.deepEqual(out.report.lookups, []);
    assert.equal(out.name, rdns.confirmed.name);
    assert.equal(out.held, false);
  }
});

test('rate: sessions of one client group count together, however the address is spelt', async (t) => {
  const setup = await engine(t, { group: { ipv4: 24, ipv6: 64 }, maxConcurrent: 1, weight: 3 });
  if (!setup) return;
  const first = await setup.engine.vet(rdns.confirmed.address, { needName: false, count: true });
  const second = await setup.engine.vet(`::ffff:${rdns.missing}`, { needName: false, count: true });
  assert.equal(first.session.summary().reasons.filter((r) => r.startsWith('rate')).length, 0);
  assert.deepEqual(
    second.session.summary().reasons.filter((r) => r.startsWith('rate')),
    ["rate +3: client's network has 2 sessions open at once (limit 1)"],
  );
  first.session.release();
  second.session.release();
  const third = await setup.engine.vet(rdns.unconfirmed.address, { needName: false, count: true });
  assert.equal(third.session.summary().reasons.filter((r) => r.startsWith('rate')).length, 0, 'released slots no longer count');
  third.session.release();
});
