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
import { loadPolicyDir, loadPolicyDirWithWarnings } from '../../src/policy/load.js';
import { checksTotal, verdictsTotal } from '../../src/policy/metrics.js';
import { addressKey } from '../../src/state/client-group.js';
import { MemoryStore } from '../../src/state/memory-store.js';
import type { ConnectQuery, StateStore } from '../../src/state/store.js';
import { sharedDnsServer, TEST_DNS } from '../helpers/dns-server.js';
import { policyDir } from '../helpers/policy-dir.js';
import { requireTool, type TestContext } from '../helpers/require-tool.js';

const server = sharedDnsServer();
const { listed, rdns } = TEST_DNS;
const US = { hostname: 'tarpit.test', addresses: ['127.0.0.1'] };
/** The message a survivor was told 451 for, and the next one in its queue. */
const MESSAGE = { sender: 'news@example.org', recipients: ['alice@example.net'] };
const OTHER = { sender: 'news@example.org', recipients: ['bob@example.net'] };

async function engine(t: TestContext, rate: Record<string, unknown> = {}): Promise<{ engine: PolicyEngine; state: PolicyState } | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  const dir = policyDir(t, {
    policy: {
      dnsbl: [
        // dnsmasq answers all of these: generous timeouts, so a loaded machine never turns an answer into a timeout.
        { zone: TEST_DNS.bl, weight: 6, answers: ['127.0.0.2-127.0.0.11'], timeout: 5 },
        { zone: `${TEST_DNS.refused}.`, weight: 3, answers: [], timeout: 5 },
      ],
      dnswl: [{ zone: TEST_DNS.wl, weight: -5, answers: ['127.0.10.0/24'], timeout: 5 }],
      rdns: { missing: 2, unconfirmed: 1 },
      firstContact: { enabled: true },
      rate,
    },
    allow: ['127.0.5.0/24', '2001:db8:5::/48'],
    block: ['127.0.1.2', '2001:db8::/64'],
  });
  const state: PolicyState = {
    dns: new DnsClient({ servers: [(await server.get()).address], timeout: 5 }),
    store: new MemoryStore({ allowlistCache: { ttl: 3600, maxEntries: 100 } }),
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
  await setup.state.store.allowlist({ client: addressKey(`::ffff:${rdns.confirmed.address}`), reason: 'test', ttl: 3600, deferred: false }, Date.now());
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

/**
 * The store-facing part of vet, without DNS: no zones, no rDNS weights, so
 * these run wherever the tests run. The store is a MemoryStore wrapped to
 * count what the engine asks of it.
 */
function plainEngine(t: TestContext, policy: Record<string, unknown> = {}, allow: readonly string[] = [], known?: readonly string[]) {
  const dir = policyDir(t, { policy: { rate: { group: { ipv4: 24, ipv6: 64 } }, ...policy }, allow, known });
  const memory = new MemoryStore();
  const calls: ConnectQuery[] = [];
  const finished: string[] = [];
  const store: StateStore = {
    kind: 'memory',
    configure: (settings) => memory.configure(settings),
    connect(query, now) {
      calls.push(query);
      return memory.connect(query, now);
    },
    finish(group, outcome, now, slot) {
      finished.push(`${group} ${outcome}`);
      memory.finish(group, outcome, now, slot);
    },
    allowlist: (...args) => memory.allowlist(...args),
    harvest: (...args) => memory.harvest(...args),
    greylist: (...args) => memory.greylist(...args),
    peekGreylist: (...args) => memory.peekGreylist(...args),
    health: () => memory.health(),
    close: () => memory.close(),
  };
  // Nothing here may reach DNS: a resolver that does not exist would make a vet wait out its timeout.
  const state: PolicyState = { dns: new DnsClient({ servers: ['127.0.0.1:9'], timeout: 0.2 }), store };
  return { engine: new PolicyEngine(loadPolicyDir(dir), state, US), memory, calls, finished };
}

test('vet asks the store once, with the canonical client key and its group; explain-style vets count nothing', async (t) => {
  const { engine: e, calls, memory } = plainEngine(t, { allowlistCache: { network: { enabled: true } } });
  const { session } = await e.vet('::ffff:192.0.2.7', { needName: false, count: true });
  assert.deepEqual(calls, [{ client: '192.0.2.7', group: '192.0.2.0/24', network: '192.0.2.0/24', count: true }], 'the allowlist network is the rate group: one key');
  assert.equal(memory.sizes.rates, 1, 'counted in its group');
  const peek = await e.vet('192.0.2.8', { needName: false, count: false });
  assert.equal(calls.length, 2);
  assert.equal(calls[1]?.count, false);
  assert.equal(peek.session.summary().reasons.filter((r) => r.startsWith('rate')).length, 0);
  // The counted session still holds its slot: a second counted vet sees two open.
  const rate = memory.connect({ client: 'x', group: '192.0.2.0/24', count: false }, Date.now()).rate;
  assert.equal(rate.concurrent, 1, 'the uncounted vet took no slot');
  session.release();
  assert.equal(memory.connect({ client: 'x', group: '192.0.2.0/24', count: false }, Date.now()).rate.concurrent, 0);
});

test('an allow-listed client never touches the store', async (t) => {
  const { engine: e, calls, finished } = plainEngine(t, {}, ['192.0.2.0/24']);
  const { session } = await e.vet('192.0.2.9', { needName: false, count: true });
  e.finish(session, 'bad');
  assert.equal(session.trusted, true);
  assert.deepEqual(calls, []);
  assert.deepEqual(finished, []);
});

test('reputation: a network with enough bad sessions, and more bad than delivered, gets the weight', async (t) => {
  const { engine: e, memory } = plainEngine(t, { reputation: { enabled: true, weight: 2, threshold: 2.5, halfLife: 86400 } });
  const now = Date.now();
  for (let i = 0; i < 2; i++) memory.finish('198.51.100.0/24', 'bad', now);
  const two = await e.vet('198.51.100.20', { needName: false, count: false });
  assert.equal(two.session.score.total, 0, 'two bad sessions are under the threshold');
  memory.finish('198.51.100.0/24', 'bad', now);
  const three = await e.vet('198.51.100.20', { needName: false, count: false });
  assert.deepEqual(three.session.summary().reasons, ["reputation +2: client's network has 3 recent bad sessions against 0 delivered (threshold 2.5, half-life 86400 s)"]);
  assert.equal(three.session.reasonClass, 'reputation');
  for (let i = 0; i < 3; i++) memory.finish('198.51.100.0/24', 'delivered', now);
  const even = await e.vet('198.51.100.20', { needName: false, count: false });
  assert.equal(even.session.score.total, 0, 'as many delivered as bad: no weight');
  const other = await e.vet('198.51.101.20', { needName: false, count: false });
  assert.equal(other.session.score.total, 0, 'another /24 has its own history');
});

test('reputation off: history is kept but never weighs', async (t) => {
  const { engine: e, memory } = plainEngine(t, { reputation: { enabled: false, weight: 2, threshold: 1 } });
  for (let i = 0; i < 5; i++) memory.finish('198.51.100.0/24', 'bad', Date.now());
  const { session } = await e.vet('198.51.100.20', { needName: false, count: false });
  assert.equal(session.score.total, 0);
});

test('finish records one outcome per session in its group and hands the slot back', async (t) => {
  const { engine: e, memory, finished } = plainEngine(t);
  const { session } = await e.vet('203.0.113.5', { needName: false, count: true });
  e.finish(session, 'bad');
  e.finish(session, 'delivered');
  assert.deepEqual(finished, ['203.0.113.0/24 bad']);
  assert.deepEqual(memory.connect({ client: 'x', group: '203.0.113.0/24', count: false }, Date.now()).rate.concurrent, 0, 'released by finish');
  assert.ok(memory.connect({ client: 'x', group: '203.0.113.0/24', count: false }, Date.now()).reputation.bad > 0.99, 'one bad session (decayed by the milliseconds since)');
  session.release(); // the front door's release after finish gives nothing back twice
  assert.equal(memory.connect({ client: 'x', group: '203.0.113.0/24', count: false }, Date.now()).rate.concurrent, 0);
});

test('survived puts the client in the allowlist cache: its next vet skips the hold', async (t) => {
  const { engine: e } = plainEngine(t, { firstContact: { enabled: true, minRetryDelay: 0 }, allowlistCache: { network: { enabled: true } } });
  const first = await e.vet('::ffff:203.0.113.9', { needName: false, count: false });
  assert.equal(first.session.held, true);
  assert.deepEqual(await e.survived(first.session, MESSAGE), { address: 'added', network: 'added' });
  const next = await e.vet('203.0.113.9', { needName: false, count: false });
  assert.equal(next.report.cached, true);
  assert.equal(next.session.held, false);
  assert.equal(next.session.passed, 'address');
});

test('a survivor\'s retry counts only after firstContact.minRetryDelay: sooner it is held again, with the early retry as evidence', async (t) => {
  const { engine: e } = plainEngine(t, { firstContact: { enabled: true, minRetryDelay: 60, earlyRetry: 1 }, allowlistCache: { network: { enabled: true } } });
  const first = await e.vet('203.0.113.9', { needName: false, count: false });
  await e.survived(first.session, MESSAGE);
  const early = await e.vet('203.0.113.9', { needName: false, count: false });
  assert.equal(early.session.held, true, 'held again');
  assert.equal(early.session.firstContact, true);
  assert.equal(early.session.passed, undefined);
  assert.equal(early.report.cached, false, 'not a pass: the DNS checks run as for a new client');
  assert.match(early.session.summary().reasons.join('\n'), /^early-retry \+1: came back \d+(\.\d)? s after its 451; a retry counts from 60 s on \(firstContact\.minRetryDelay\)$/m);
  // Held again for its next queued message, it keeps the first survival's time: its pause is not pushed back.
  assert.deepEqual(await e.survived(early.session, OTHER), { address: 'kept', network: 'kept' });
  // The same message again, too soon: a bot hammering; its pause starts over.
  const again = await e.vet('203.0.113.9', { needName: false, count: false });
  assert.deepEqual(await e.survived(again.session, { sender: 'NEWS@example.org', recipients: ['Alice@example.net'] }), { address: 'restarted', network: 'kept' }, 'the envelope is compared case-blind');
});

test('a greet wait\'s survivor (relayed, never told to retry) counts at once; a pass is not early once the pause is over', async (t) => {
  const { engine: e, memory } = plainEngine(t, { firstContact: { enabled: true, minRetryDelay: 60 } });
  await e.survived((await e.vet('203.0.113.10', { needName: false, count: false })).session, undefined);
  assert.equal((await e.vet('203.0.113.10', { needName: false, count: false })).session.passed, 'address');
  // An entry written 61 s ago, deferred: its pause is over.
  memory.allowlist({ client: '203.0.113.11', reason: 'test', ttl: 3600, deferred: true }, Date.now() - 61_000);
  assert.equal((await e.vet('203.0.113.11', { needName: false, count: false })).session.passed, 'address');
});

test('a pass counts for the network: a neighbour is relayed without a hold once the pause is over, not before', async (t) => {
  const { engine: e, memory } = plainEngine(t, { firstContact: { enabled: true, minRetryDelay: 60 }, allowlistCache: { network: { enabled: true } } });
  memory.allowlist({ client: '198.51.100.1', reason: 'test', ttl: 3600, deferred: true, network: { key: '198.51.100.0/24', ttl: 600, reputationGroup: '198.51.100.0/24' } }, Date.now() - 61_000);
  const neighbour = await e.vet('198.51.100.2', { needName: false, count: false });
  assert.equal(neighbour.session.held, false);
  assert.equal(neighbour.session.passed, 'network');
  assert.equal(neighbour.report.cached, false, 'another host: its own DNS checks still run');
  assert.ok(neighbour.session.summary().reasons.includes('allowlist-cache: its network passed a hold (allowlist cache, allowlistCache.network)'));

  memory.allowlist({ client: '198.51.101.1', reason: 'test', ttl: 3600, deferred: true, network: { key: '198.51.101.0/24', ttl: 600, reputationGroup: '198.51.101.0/24' } }, Date.now());
  const tooSoon = await e.vet('198.51.101.2', { needName: false, count: false });
  assert.equal(tooSoon.session.held, true, 'a neighbour within the pause is a first contact');
  assert.equal(tooSoon.session.summary().reasons.filter((r) => r.startsWith('early-retry')).length, 0, 'another host connecting is not an early retry');
  assert.equal((await e.vet('203.0.113.1', { needName: false, count: false })).session.held, true, 'another network');
});

test('network passes off: only the exact address is remembered and asked for', async (t) => {
  const { engine: e, calls } = plainEngine(t, { firstContact: { enabled: true, minRetryDelay: 0 } });
  const first = await e.vet('198.51.100.1', { needName: false, count: false });
  assert.deepEqual(await e.survived(first.session, MESSAGE), { address: 'added' });
  assert.equal(calls[0]?.network, undefined);
  assert.equal((await e.vet('198.51.100.2', { needName: false, count: false })).session.held, true);
});

test('a network whose bad sessions outnumber its delivered ones is not remembered for a survivor', async (t) => {
  const { engine: e, memory } = plainEngine(t, { firstContact: { enabled: true, minRetryDelay: 0 }, allowlistCache: { network: { enabled: true } } });
  for (let i = 0; i < 3; i++) memory.finish('192.0.2.0/24', 'bad', Date.now());
  const first = await e.vet('192.0.2.1', { needName: false, count: false });
  assert.deepEqual(await e.survived(first.session, MESSAGE), { address: 'added', network: 'bad-reputation' });
  assert.equal((await e.vet('192.0.2.2', { needName: false, count: false })).session.held, true);
  assert.equal((await e.vet('192.0.2.1', { needName: false, count: false })).session.passed, 'address', 'the survivor itself is remembered');
});

test('known senders skip the first-contact hold and the rate weight, and the session names the rule; everything else still counts', async (t) => {
  const { engine: e } = plainEngine(
    t,
    {
      firstContact: { enabled: true },
      knownSenders: { networks: 'known-senders.cidr', trustedBelow: 0 },
      rate: { group: { ipv4: 24, ipv6: 64 }, maxConcurrent: 1, maxPerMinute: 100, weight: 3 },
    },
    [],
    ['# walked from SPF', '198.51.100.0/24'],
  );
  const vet = async (ip: string) => (await e.vet(ip, { needName: false, count: true })).session;
  const pool = [await vet('198.51.100.7'), await vet('198.51.100.8')];
  for (const s of pool) {
    assert.equal(s.firstContact, false, 'no hold');
    assert.equal(s.held, false);
    assert.equal(s.knownSender, 'knownSenders.networks');
    assert.deepEqual(s.summary().knownSender, 'knownSenders.networks');
    assert.match(s.summary().reasons.join('\n'), /^known-sender: listed in .*known-senders\.cidr:3 \(198\.51\.100\.0\/24\): knownSenders\.networks$/m);
    assert.equal(s.summary().reasons.filter((r) => r.startsWith('rate')).length, 0, 'its pool may open many sessions at once');
  }
  const stranger = [await vet('203.0.113.7'), await vet('203.0.113.8')];
  assert.equal(stranger[0]?.firstContact, true);
  assert.ok(stranger[1]?.summary().reasons.some((r) => r.startsWith('rate +3')), 'a stranger over maxConcurrent is weighed');
  const vouched = await vet('192.0.2.9');
  assert.equal(vouched.knownSender, undefined, 'score 0 is not below trustedBelow 0');
  for (const s of [...pool, ...stranger, vouched]) s.release();
});

test('a known sender still meets everything else it shows: a block-list entry holds it', async (t) => {
  const dir = policyDir(t, {
    policy: { firstContact: { enabled: true }, knownSenders: { networks: 'known-senders.cidr' } },
    block: ['198.51.100.7'],
    known: ['198.51.100.0/24'],
  });
  const e = new PolicyEngine(loadPolicyDir(dir), { dns: new DnsClient({ servers: ['127.0.0.1:9'], timeout: 0.2 }), store: new MemoryStore() }, US);
  const { session } = await e.vet('198.51.100.7', { needName: false, count: false });
  assert.equal(session.knownSender, 'knownSenders.networks');
  assert.equal(session.verdict, 'tarpit');
  assert.equal(session.held, true);
});

test('recipientRejected counts the group in the store: a sweep over sessions escalates', async (t) => {
  const { engine: e } = plainEngine(t, { harvest: { rejected: 3, window: 600, weight: 8 } });
  const sessions = await Promise.all([1, 2, 3].map((i) => e.vet(`203.0.113.${i}`, { needName: false, count: false })));
  const escalated = sessions.map(({ session }) => e.recipientRejected(session, 1));
  assert.deepEqual(escalated, [false, false, true], 'the third rejection in the /24 reaches the limit');
  assert.equal(sessions[2]?.session.verdict, 'reject');
});

test('greylisting: exemptions, then the triplet decides', async (t) => {
  const greylisting = { enabled: true, minDelay: 300, pendingExpiry: 14400, passedExpiry: 3024000 };
  const { engine: e } = plainEngine(t, { greylisting, allowlistCache: { network: { enabled: true } } }, ['192.0.2.0/24']);
  const vet = async (ip: string) => (await e.vet(ip, { needName: false, count: false })).session;
  assert.equal(e.greylistExempt(await vet('192.0.2.1')), 'in the allow list');
  const google = await vet('198.51.100.1');
  google.knownSender = 'knownSenders.rdnsSuffixes: google.com';
  assert.equal(e.greylistExempt(google), 'a known sender (knownSenders.rdnsSuffixes: google.com)');
  const fake = await vet('198.51.100.2');
  assert.equal(e.greylistExempt(fake), undefined);
  assert.equal(e.greylist(fake, 'A@Example.org', 'B@example.NET'), 'new');
  assert.equal(e.greylist(fake, 'a@example.org', 'b@example.net'), 'early', 'the triplet is lower-cased');
  const held = await vet('198.51.100.4');
  held.add({ check: 'block', weight: 5, reason: 'test', class: 'blocklisted' });
  assert.equal(e.greylistExempt(held), 'verdict tarpit: never relayed', 'a held session never reaches the backend anyway');
  await e.survived(await vet('198.51.100.5'), MESSAGE);
  assert.equal(e.greylistExempt(await vet('198.51.100.5')), 'in the allowlist cache (passed a hold)');
  assert.equal(e.greylistExempt(await vet('198.51.100.6')), 'its network is in the allowlist cache (a neighbour passed a hold)');
});

test('greylisting with settings written before knownSenders (greylisting.exempt) exempts the same clients as before', async (t) => {
  const dir = policyDir(t, {
    // knownSenders left out (the base writes one): the policy of an admin who has not renamed the key yet.
    policy: { knownSenders: undefined, greylisting: { enabled: true, minDelay: 300, exempt: { rdnsSuffixes: ['google.com'], trustedBelow: 1 } } },
  });
  const { policy } = loadPolicyDirWithWarnings(dir);
  assert.deepEqual(policy.knownSenders.rdnsSuffixes, ['google.com']);
  const e = new PolicyEngine(policy, { dns: new DnsClient({ servers: ['127.0.0.1:9'], timeout: 0.2 }), store: new MemoryStore() }, US);
  const { session } = await e.vet('198.51.100.1', { needName: false, count: false });
  assert.equal(e.greylistExempt(session), 'a known sender (knownSenders.trustedBelow)', 'score 0 is below the old trustedBelow 1, as before');
  const strict = policyDir(t, { policy: { knownSenders: undefined, greylisting: { enabled: true, exempt: { trustedBelow: 0 } } } });
  const e2 = new PolicyEngine(loadPolicyDir(strict), { dns: new DnsClient({ servers: ['127.0.0.1:9'], timeout: 0.2 }), store: new MemoryStore() }, US);
  const other = (await e2.vet('198.51.100.2', { needName: false, count: false })).session;
  assert.equal(e2.greylistExempt(other), undefined);
  assert.equal(e2.greylist(other, 'a@example.org', 'b@example.net'), 'new', 'greylisted as before');
});

test('greylisting off: nobody is greylisted', async (t) => {
  const { engine: e } = plainEngine(t);
  const { session } = await e.vet('198.51.100.2', { needName: false, count: false });
  assert.equal(e.greylistExempt(session), 'greylisting is off');
  assert.equal(e.greylist(session, 'a@example.org', 'b@example.net'), undefined);
});
