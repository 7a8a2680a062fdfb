/**
 * DnsClient's TXT and MX lookups (for the SPF walk) against a real dnsmasq
 * serving test/helpers/spf-zone.ts: a record's character-strings joined with
 * no separator (RFC 7208 §3.3), one string per record, MX hosts with their
 * preference, and nothing-there, refusals and caching as for the other types.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DnsClient } from '../../../src/policy/dns/dns-client.js';
import { dnsCacheTotal } from '../../../src/policy/dns/metrics.js';
import { requireTool, type TestContext } from '../../helpers/require-tool.js';
import { sharedSpfDns, SPF_ZONE } from '../../helpers/spf-zone.js';

const server = sharedSpfDns();
const SPF = { zone: 'spf' };

async function client(t: TestContext): Promise<DnsClient | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  const dns = await server.get();
  return new DnsClient({ servers: [dns.address], timeout: 5, untimedTtl: 120 });
}

async function hits(): Promise<number> {
  return (await dnsCacheTotal.get()).values.find((v) => v.labels.result === 'hit')?.value ?? 0;
}

test('a TXT record sent as several character-strings comes back as one string, joined with nothing between', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  assert.deepEqual(await dns.resolveTxt(SPF_ZONE.chunked.domain, SPF), { kind: 'answer', texts: ['v=spf1 ip4:192.0.2.32/27 -all'], ttl: 120 });
});

test('each TXT record is its own string', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await dns.resolveTxt(SPF_ZONE.two.domain, SPF);
  assert.equal(result.kind, 'answer');
  assert.deepEqual(result.kind === 'answer' && [...result.texts].sort(), ['v=spf1 -all', 'v=spf1 ip4:192.0.2.250 -all']);
});

test('MX answers carry each host and its preference', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await dns.resolveMx(SPF_ZONE.hosts.domain, SPF);
  assert.equal(result.kind, 'answer');
  assert.deepEqual(
    result.kind === 'answer' && [...result.exchanges].sort((a, b) => a.priority - b.priority),
    [
      { exchange: 'mx1.spf.test', priority: 10 },
      { exchange: 'mx2.spf.test', priority: 20 },
    ],
  );
});

test('a name without TXT or MX records, or without any record, is nxdomain; a refused query is an error value', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  assert.deepEqual(await dns.resolveTxt('www.spf.test', SPF), { kind: 'nxdomain' }, 'NODATA: www has only an A record');
  assert.deepEqual(await dns.resolveTxt(SPF_ZONE.missing.nxdomain, SPF), { kind: 'nxdomain' });
  assert.deepEqual(await dns.resolveMx(SPF_ZONE.nested.domain, SPF), { kind: 'nxdomain' });
  assert.deepEqual(await dns.resolveTxt(SPF_ZONE.refused.target, SPF), { kind: 'error', reason: 'refused', code: 'EREFUSED' });
});

test('TXT and MX answers are cached like the others', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const txt = await dns.resolveTxt(SPF_ZONE.nested.domain, SPF);
  const mx = await dns.resolveMx(SPF_ZONE.hosts.domain, SPF);
  const before = await hits();
  assert.deepEqual(await dns.resolveTxt(SPF_ZONE.nested.domain.toUpperCase(), SPF), txt);
  assert.deepEqual(await dns.resolveMx(SPF_ZONE.hosts.domain, SPF), mx);
  assert.equal(await hits(), before + 2);
});
