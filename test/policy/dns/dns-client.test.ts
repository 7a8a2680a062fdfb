/**
 * DnsClient against a real dnsmasq (test/helpers/dns-server.ts): answers with
 * their TTL, NXDOMAIN/NODATA, refusals and timeouts as values, the TTL cache
 * (fake clock), de-duplicated in-flight queries, and the metrics.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../../../src/core/ip.js';
import { DnsClient, type DnsClientOptions } from '../../../src/policy/dns/dns-client.js';
import { dnsCacheTotal, dnsLookupSeconds } from '../../../src/policy/dns/metrics.js';
import { sharedDnsServer, startSilentServer, TEST_DNS } from '../../helpers/dns-server.js';
import { requireTool } from '../../helpers/require-tool.js';
import { waitFor } from '../../helpers/wait-for.js';

const server = sharedDnsServer();
const BL = TEST_DNS.bl;

async function client(t: Parameters<typeof requireTool>[0], options: Partial<DnsClientOptions> = {}): Promise<DnsClient | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  const dns = await server.get();
  // dnsmasq answers: a generous default, so a loaded machine never turns an answer into a timeout.
  return new DnsClient({ servers: [dns.address], timeout: 5, ...options });
}

async function cacheCount(result: 'hit' | 'miss'): Promise<number> {
  return (await dnsCacheTotal.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
}

async function lookupCount(zone: string, result: string): Promise<number> {
  const values = (await dnsLookupSeconds.get()).values;
  return values.find((v) => v.metricName === 'smtp_tarpit_dns_lookup_seconds_count' && v.labels.zone === zone && v.labels.result === result)?.value ?? 0;
}

function fakeClock(): { now: () => number; advance(seconds: number): void } {
  let ms = 1_000_000;
  return { now: () => ms, advance: (seconds) => (ms += seconds * 1000) };
}

test('A and AAAA answers carry the addresses and the TTL the server gave', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  assert.deepEqual(await dns.resolve4(`2.0.0.127.${BL}`, { zone: BL }), { kind: 'answer', addresses: ['127.0.0.2'], ttl: TEST_DNS.ttl });
  assert.deepEqual(await dns.resolve6('mx.good.test', { zone: 'rdns' }), { kind: 'answer', addresses: ['2001:db8::25'], ttl: TEST_DNS.ttl });
});

test('PTR lookups take an address, IPv4-mapped IPv6 included', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const { confirmed } = TEST_DNS.rdns;
  for (const address of [confirmed.address, `::ffff:${confirmed.address}`, confirmed.ipv6]) {
    const result = await dns.reverse(address, { zone: 'rdns' });
    assert.equal(result.kind, 'answer', address);
    assert.deepEqual(result.kind === 'answer' && result.names, [confirmed.name], address);
  }
  assert.deepEqual(await dns.reverse('not-an-address', { zone: 'rdns' }), { kind: 'error', reason: 'other', code: 'EBADNAME' });
});

test('NXDOMAIN and NODATA both mean "nothing there"', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  assert.deepEqual(await dns.resolve4(`1.0.0.127.${BL}`, { zone: BL }), { kind: 'nxdomain' });
  assert.deepEqual(await dns.resolve6(`2.0.0.127.${BL}`, { zone: BL }), { kind: 'nxdomain' }, 'an A-only name has no AAAA');
  assert.deepEqual(await dns.reverse(TEST_DNS.rdns.missing, { zone: 'rdns' }), { kind: 'nxdomain' });
});

test('a refused query is an error value, and errors are never cached', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const name = `2.0.0.127.${TEST_DNS.refused}`;
  assert.deepEqual(await dns.resolve4(name, { zone: TEST_DNS.refused }), { kind: 'error', reason: 'refused', code: 'EREFUSED' });
  const misses = await cacheCount('miss');
  await dns.resolve4(name, { zone: TEST_DNS.refused });
  assert.equal(await cacheCount('miss'), misses + 1, 'the second lookup went to the server again');
});

test('a zone that never answers times out after its own timeout, not the default', async (t) => {
  const dns = await client(t, { timeout: 5 });
  if (!dns) return;
  const before = await lookupCount('slow-zone', 'timeout');
  const started = performance.now();
  const result = await dns.resolve4(`2.0.0.127.${TEST_DNS.slow}`, { zone: 'slow-zone', timeout: 0.3 });
  const elapsed = performance.now() - started;
  assert.deepEqual(result, { kind: 'error', reason: 'timeout', code: 'ETIMEOUT' });
  // Its own 0.3 s, not the client's 5 s; 2 s of room for late timers on a loaded machine.
  assert.ok(elapsed >= 280 && elapsed < 2300, `took ${elapsed.toFixed(0)} ms for a 300 ms timeout`);
  assert.equal(await lookupCount('slow-zone', 'timeout'), before + 1);
});

test('an answer is served from the cache until its TTL runs out', async (t) => {
  const clock = fakeClock();
  const dns = await client(t, { now: clock.now });
  if (!dns) return;
  const name = `2.0.0.127.${BL}`;
  const first = await dns.resolve4(name, { zone: 'cache-zone' });
  assert.equal(first.kind, 'answer');
  const [hits, misses, lookups] = [await cacheCount('hit'), await cacheCount('miss'), await lookupCount('cache-zone', 'answer')];

  clock.advance(TEST_DNS.ttl - 1);
  assert.deepEqual(await dns.resolve4(name.toUpperCase(), { zone: 'cache-zone' }), first, 'names are case-insensitive');
  assert.equal(await cacheCount('hit'), hits + 1);
  assert.equal(await cacheCount('miss'), misses);
  assert.equal(await lookupCount('cache-zone', 'answer'), lookups, 'a cache hit is not a lookup');

  clock.advance(2);
  assert.deepEqual(await dns.resolve4(name, { zone: 'cache-zone' }), first);
  assert.equal(await cacheCount('miss'), misses + 1, 'expired after the TTL: asked again');
  assert.equal(await lookupCount('cache-zone', 'answer'), lookups + 1);
});

test('peek4, peek6 and peekReverse answer from the cache only: a miss asks nothing and counts nothing', async (t) => {
  const clock = fakeClock();
  const dns = await client(t, { now: clock.now });
  if (!dns) return;
  const { confirmed } = TEST_DNS.rdns;
  const ip = parseIp(confirmed.address);
  assert.ok(ip);
  const name = `2.0.0.127.${BL}`;
  const [hits, misses, lookups] = [await cacheCount('hit'), await cacheCount('miss'), await lookupCount('peek-zone', 'answer')];
  assert.equal(dns.peek4(name), undefined);
  assert.equal(dns.peek6(confirmed.name), undefined);
  assert.equal(dns.peekReverse(ip), undefined);
  assert.deepEqual([await cacheCount('hit'), await cacheCount('miss'), await lookupCount('peek-zone', 'answer')], [hits, misses, lookups], 'a peek that misses counts nothing');

  const a = await dns.resolve4(name, { zone: 'peek-zone' });
  const aaaa = await dns.resolve6(confirmed.name, { zone: 'peek-zone' });
  const ptr = await dns.reverse(`::ffff:${confirmed.address}`, { zone: 'peek-zone' });
  assert.equal(await cacheCount('miss'), misses + 3);
  assert.deepEqual(dns.peek4(name.toUpperCase()), a, 'the answer resolve4 cached, whatever the case of the name');
  assert.deepEqual(dns.peek6(confirmed.name), aaaa);
  assert.deepEqual(dns.peekReverse(ip), ptr, 'the PTR of the folded address');
  assert.equal(dns.peek4(confirmed.name), undefined, 'an AAAA answer is not an A answer');
  assert.equal(await cacheCount('hit'), hits + 3, 'each peek that hits counts as a lookup answered from the cache');
  assert.equal(await cacheCount('miss'), misses + 3);

  clock.advance(TEST_DNS.ttl + 1);
  assert.equal(dns.peek4(name), undefined, 'expired with its TTL, as a lookup would find it');
});

test('a TTL of 0 is not cached', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const name = `3.0.0.127.${BL}`;
  assert.deepEqual(await dns.resolve4(name, { zone: BL }), { kind: 'answer', addresses: ['127.0.0.3'], ttl: 0 });
  const misses = await cacheCount('miss');
  await dns.resolve4(name, { zone: BL });
  assert.equal(await cacheCount('miss'), misses + 1);
});

test('NXDOMAIN is cached for the negative TTL, capped at 300 s', async (t) => {
  const clock = fakeClock();
  const dns = await client(t, { now: clock.now, negativeTtl: 3600 });
  if (!dns) return;
  const name = `1.0.0.127.${BL}`;
  await dns.resolve4(name, { zone: BL });
  const misses = await cacheCount('miss');
  clock.advance(299);
  assert.deepEqual(await dns.resolve4(name, { zone: BL }), { kind: 'nxdomain' });
  assert.equal(await cacheCount('miss'), misses, 'still cached at 299 s');
  clock.advance(2);
  await dns.resolve4(name, { zone: BL });
  assert.equal(await cacheCount('miss'), misses + 1, 'expired at 301 s despite negativeTtl 3600');
});

test('the cache is bounded by entry count', async (t) => {
  const dns = await client(t, { maxEntries: 1 });
  if (!dns) return;
  await dns.resolve4(`2.0.0.127.${BL}`, { zone: BL });
  await dns.resolve4(`4.0.0.127.${BL}`, { zone: BL });
  const misses = await cacheCount('miss');
  await dns.resolve4(`2.0.0.127.${BL}`, { zone: BL });
  assert.equal(await cacheCount('miss'), misses + 1, 'the older entry was evicted');
});

test('concurrent identical queries share one packet; timeouts are not cached', async (t) => {
  const silent = await startSilentServer();
  t.after(() => silent.stop());
  const dns = new DnsClient({ servers: [silent.address], timeout: 0.2 });
  const results = await Promise.all([
    dns.resolve4('a.example.test', { zone: 'dedup' }),
    dns.resolve4('A.example.test', { zone: 'dedup' }),
    dns.resolve4('b.example.test', { zone: 'dedup' }),
  ]);
  for (const r of results) assert.deepEqual(r, { kind: 'error', reason: 'timeout', code: 'ETIMEOUT' });
  assert.equal(silent.packets(), 2, 'one query per distinct name');
  // c-ares keeps its own copy of the timed-out query a while (~390 ms for a 200 ms timeout when
  // measured, longer on a loaded machine); a call meanwhile joins it and sends nothing. Ask one at a
  // time until one starts a query: a cached timeout would never send one.
  await waitFor(
    async () => {
      await dns.resolve4('a.example.test', { zone: 'dedup' });
      return silent.packets() > 2;
    },
    { what: 'a new query for the timed-out name' },
  );
  assert.equal(silent.packets(), 3, 'a timeout was not cached: asked again');
});

test('servers are ip, ip:port or [v6]:port; anything else is refused at construction', () => {
  for (const servers of [[], ['127.0.0.1'], ['127.0.0.1:5353'], ['[::1]:5353', '::1']]) {
    assert.doesNotThrow(() => new DnsClient({ servers, timeout: 1 }), servers.join(','));
  }
  assert.throws(() => new DnsClient({ servers: ['dns.example.org'], timeout: 1 }));
});
