/**
 * The dnsbl/dnswl checks against a real dnsmasq serving test zones
 * (test/helpers/dns-server.ts): listed, not listed, answers outside the
 * filter, IPv6 nibbles, IPv4-mapped clients, allowlist weights, and zones
 * that time out — alone and beside others, which must not add up.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ipv4ToUint } from '../../../src/core/ip.js';
import { checkDnsZones } from '../../../src/policy/checks/dns-zones.js';
import { DnsClient } from '../../../src/policy/dns/dns-client.js';
import { dnsCacheTotal } from '../../../src/policy/dns/metrics.js';
import type { AnswerRange, DnsZone } from '../../../src/policy/spec.js';
import { sharedDnsServer, TEST_DNS } from '../../helpers/dns-server.js';
import { requireTool, type TestContext } from '../../helpers/require-tool.js';

const server = sharedDnsServer();
const { listed } = TEST_DNS;

function range(text: string): AnswerRange {
  const [first, last = first] = text.split('-') as [string, string?];
  return { text, first: ipv4ToUint(first)!, last: ipv4ToUint(last)! };
}

/** Seconds a timer may fire late on a loaded machine before a timing bound below counts it as wrong. */
const STALL = 2;

// Timeouts that must not fire (dnsmasq answers) are generous; the silent zones set their own.
function zone(name: string, weight: number, answers: string[] = [], timeout = 5): DnsZone {
  return { zone: name, weight, answers: answers.map(range), timeout };
}

/** A fresh client per test, so no test sees another's cache. */
async function client(t: TestContext): Promise<DnsClient | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  return new DnsClient({ servers: [(await server.get()).address], timeout: 5 });
}

async function cacheHits(): Promise<number> {
  return (await dnsCacheTotal.get()).values.find((v) => v.labels.result === 'hit')?.value ?? 0;
}

const BL = zone(TEST_DNS.bl, 8, ['127.0.0.2-127.0.0.11']);

test('a listed client gets the zone weight, naming zone and answer', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkDnsZones(listed.ipv4, [BL], 'dnsbl', dns);
  assert.deepEqual(result.evidence, [{ check: 'dnsbl', weight: 8, reason: 'listed on bl.test (127.0.0.2)', class: 'dnsbl' }]);
  assert.equal(result.kind, 'dnsbl');
  assert.deepEqual(result.lookups, [
    { zone: 'bl.test', kind: 'dnsbl', query: '2.0.0.127.bl.test', result: 'listed', answers: ['127.0.0.2'], matched: ['127.0.0.2'], detail: '127.0.0.2' },
  ]);
});

test('a client on no list gets no evidence', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkDnsZones(TEST_DNS.clean, [BL], 'dnsbl', dns);
  assert.deepEqual(result.evidence, []);
  assert.equal(result.lookups[0]?.result, 'not-listed');
});

test('an answer outside the zone filter is not a listing; an empty filter takes any answer', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const filtered = await checkDnsZones(listed.errorCode, [BL], 'dnsbl', dns);
  assert.deepEqual(filtered.evidence, []);
  assert.equal(filtered.lookups[0]?.result, 'not-listed');
  assert.deepEqual(filtered.lookups[0]?.answers, ['127.255.255.254'], 'explain still sees what the zone said');
  assert.match(filtered.lookups[0]?.detail ?? '', /127\.255\.255\.254, outside 127\.0\.0\.2-127\.0\.0\.11/);

  const any = await checkDnsZones(listed.errorCode, [zone(TEST_DNS.bl, 4)], 'dnsbl', dns);
  assert.deepEqual(any.evidence.map((e) => e.weight), [4]);
  const single = await checkDnsZones(listed.ipv4, [zone(TEST_DNS.bl, 4, ['127.0.0.3', '127.0.0.2'])], 'dnsbl', dns);
  assert.equal(single.evidence.length, 1, 'one matching range among several is enough');
});

test('IPv6 clients are asked by nibbles', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkDnsZones(listed.ipv6, [BL], 'dnsbl', dns);
  assert.equal(result.lookups[0]?.query, `2${'.0'.repeat(23)}.8.b.d.0.1.0.0.2.bl.test`);
  assert.deepEqual(result.evidence.map((e) => e.reason), ['listed on bl.test (127.0.0.2)']);
  const other = await checkDnsZones('2001:db8::3', [BL], 'dnsbl', dns);
  assert.deepEqual(other.evidence, []);
});

test('an IPv4-mapped IPv6 client is asked as IPv4', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkDnsZones(`::ffff:${listed.ipv4}`, [BL], 'dnsbl', dns);
  assert.equal(result.lookups[0]?.query, '2.0.0.127.bl.test');
  assert.equal(result.evidence.length, 1);
});

test('a DNSWL listing carries its negative weight and class dnswl', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const wl = zone(TEST_DNS.wl, -5, ['127.0.0.0-127.0.255.255']);
  const result = await checkDnsZones(listed.allowlisted, [wl], 'dnswl', dns);
  assert.deepEqual(result.evidence, [{ check: 'dnswl', weight: -5, reason: 'listed on wl.test (127.0.10.2)', class: 'dnswl' }]);
  assert.deepEqual((await checkDnsZones(listed.ipv4, [wl], 'dnswl', dns)).evidence, [], 'a blocklisted client is not on the allowlist');
});

test('a zone that times out gives no evidence and costs its own timeout, no more', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const started = performance.now();
  const result = await checkDnsZones(listed.ipv4, [zone(TEST_DNS.slow, 8, [], 0.4)], 'dnsbl', dns);
  const elapsed = performance.now() - started;
  assert.deepEqual(result.evidence, []);
  assert.equal(result.lookups[0]?.result, 'timeout');
  assert.equal(result.lookups[0]?.detail, 'timed out after 0.4 s');
  // Its own 0.4 s, not the client's 5 s.
  assert.ok(elapsed >= 380 && elapsed < 400 + STALL * 1000, `took ${elapsed.toFixed(0)} ms for a 400 ms timeout`);
});

test('zones are asked in parallel: two timeouts cost one, and the answering zone still counts', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  // Long enough that one after the other (5 s) and in parallel (2.5 s) stay apart by more than a stall.
  const zones = [zone(`a.${TEST_DNS.slow}`, 1, [], 2.5), BL, zone(`b.${TEST_DNS.slow}`, 1, [], 2.5)];
  const started = performance.now();
  const result = await checkDnsZones(listed.ipv4, zones, 'dnsbl', dns);
  const elapsed = performance.now() - started;
  assert.deepEqual(result.lookups.map((l) => [l.zone, l.result]), [
    ['a.slow.test', 'timeout'],
    ['bl.test', 'listed'],
    ['b.slow.test', 'timeout'],
  ]);
  assert.deepEqual(result.evidence.map((e) => e.reason), ['listed on bl.test (127.0.0.2)']);
  assert.ok(elapsed < 2500 + STALL * 1000, `took ${elapsed.toFixed(0)} ms: two 2.5 s timeouts were waited for one after the other`);
});

test('a refused zone is an error outcome without evidence', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkDnsZones(listed.ipv4, [zone(TEST_DNS.refused, 8)], 'dnsbl', dns);
  assert.deepEqual(result.evidence, []);
  assert.equal(result.lookups[0]?.result, 'error');
  assert.equal(result.lookups[0]?.detail, 'lookup failed: refused (EREFUSED)');
});

test('a second check within the TTL is answered from the cache', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const first = await checkDnsZones(listed.ipv4, [BL], 'dnsbl', dns);
  const hits = await cacheHits();
  const second = await checkDnsZones(listed.ipv4, [BL], 'dnsbl', dns);
  assert.deepEqual(second, first);
  assert.equal(await cacheHits(), hits + 1);
});

test('with every zone cached the check answers synchronously, the same as from the resolver; one zone missing makes it wait', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const other = zone(TEST_DNS.bl, 2, ['127.255.255.254']);
  for (const address of [listed.ipv4, listed.ipv6, listed.errorCode, TEST_DNS.clean]) {
    const cold = checkDnsZones(address, [BL, other], 'dnsbl', dns);
    assert.ok(cold instanceof Promise, `${address}: nothing cached yet`);
    const expected = await cold;
    const warm = checkDnsZones(address, [BL, other], 'dnsbl', dns);
    assert.ok(!(warm instanceof Promise), `${address}: all cached`);
    assert.deepEqual(warm, expected, address);
  }
  const fresh = await client(t);
  if (!fresh) return;
  await checkDnsZones(listed.errorCode, [BL], 'dnsbl', fresh);
  const partly = checkDnsZones(listed.errorCode, [BL, zone(TEST_DNS.wl, -1)], 'dnsbl', fresh);
  assert.ok(partly instanceof Promise, 'one zone cached, one not');
  assert.deepEqual((await partly).lookups.map((l) => [l.zone, l.result]), [['bl.test', 'not-listed'], ['wl.test', 'not-listed']]);
});

test('no zones, or an address that is not an IP, asks nothing', async (t) => {
  const dns = new DnsClient({ servers: ['127.0.0.1:9'], timeout: 0.1 });
  assert.deepEqual(await checkDnsZones(listed.ipv4, [], 'dnsbl', dns), { kind: 'dnsbl', evidence: [], lookups: [] });
  assert.deepEqual(await checkDnsZones('unix-socket', [BL], 'dnsbl', dns), { kind: 'dnsbl', evidence: [], lookups: [] });
  t.diagnostic('no DNS server needed');
});
