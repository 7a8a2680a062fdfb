/**
 * The SPF walk against a real DNS server (dnsmasq serving
 * test/helpers/spf-zone.ts) through the shared DnsClient: includes, a loop,
 * redirect, a and mx with dual CIDR lengths, the RFC 7208 §4.6.4 limits
 * reported, and every kind of broken record reported by code, naming the
 * domain and the term, while the walk lists what it found elsewhere. The
 * whole zone's list loads with parseCidrListText and as a policy's allow list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DnsClient } from '../../../src/policy/dns/dns-client.js';
import { parseCidrListText } from '../../../src/policy/lists/cidr-list.js';
import { loadPolicyDirWithWarnings } from '../../../src/policy/load.js';
import { formatCidrList } from '../../../src/policy/spf/cidr-output.js';
import { networkText } from '../../../src/policy/spf/network.js';
import type { SpfProblem } from '../../../src/policy/spf/spf-problem.js';
import { walkSpf, type SpfWalk, type SpfWalkOptions } from '../../../src/policy/spf/spf-walk.js';
import { policyDir } from '../../helpers/policy-dir.js';
import { requireTool, type TestContext } from '../../helpers/require-tool.js';
import { sharedSpfDns, SPF_ZONE as Z } from '../../helpers/spf-zone.js';

const server = sharedSpfDns();

/**
 * Lookups that should answer get 5 s: a busy machine must not turn an answer
 * into a timeout. Only the silent server's names wait that long, and only the
 * timeout test asks for them, with 2 s.
 */
async function walk(t: TestContext, domains: readonly string[], options: SpfWalkOptions & { timeout?: number } = {}): Promise<SpfWalk | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  const dns = await server.get();
  return walkSpf(domains, new DnsClient({ servers: [dns.address], timeout: options.timeout ?? 5 }), options);
}

/** Every network found, in walk order, as list text (repeats kept). */
function networks(w: SpfWalk): string[] {
  return w.sources.flatMap((s) => s.networks.map((n) => networkText(n.network)));
}

/** The problems as [code, domain, term], for deepEqual. */
function problems(w: SpfWalk): [string, string, string | undefined][] {
  return w.problems.map((p) => [p.code, p.domain, p.term]);
}

function only(w: SpfWalk, code: SpfProblem['code']): SpfProblem {
  const found = w.problems.filter((p) => p.code === code);
  assert.equal(found.length, 1, `one ${code} problem expected: ${JSON.stringify(w.problems)}`);
  return found[0]!;
}

test('nested includes three levels deep give every level\'s networks under its own source, in walk order', async (t) => {
  const w = await walk(t, [Z.nested.domain]);
  if (!w) return;
  assert.deepEqual(w.problems, []);
  assert.deepEqual(
    w.sources.map((s) => [s.record, s.path.join(' > ')]),
    [
      [Z.nested.domain, Z.nested.domain],
      [Z.nested.level1, `${Z.nested.domain} > ${Z.nested.level1}`],
      [Z.nested.level2, `${Z.nested.domain} > ${Z.nested.level1} > ${Z.nested.level2}`],
    ],
  );
  assert.ok(w.sources.every((s) => s.domain === Z.nested.domain));
  assert.deepEqual(networks(w), ['192.0.2.0/24', '2001:db8:1::/48', '198.51.100.0/25', '192.0.2.0/24']);
});

test('a loop (a includes b includes a) is an error naming the domain and the include that closes it, and both networks are listed', async (t) => {
  const w = await walk(t, [Z.loop.a]);
  if (!w) return;
  assert.deepEqual(problems(w), [['loop', Z.loop.b, `include:${Z.loop.a}`]]);
  const loop = only(w, 'loop');
  assert.equal(loop.severity, 'error');
  assert.equal(loop.from, Z.loop.a);
  assert.match(loop.reason, new RegExp(`${Z.loop.a} -> ${Z.loop.b} -> ${Z.loop.a}`));
  assert.deepEqual(networks(w), Z.loop.networks);
});

test('redirect= is followed: the target\'s networks are listed under it', async (t) => {
  const w = await walk(t, [Z.redirect.domain]);
  if (!w) return;
  assert.deepEqual(w.problems, []);
  assert.deepEqual(networks(w), Z.redirect.networks);
  assert.deepEqual(w.sources.at(-1)?.path, [Z.redirect.domain, Z.redirect.target]);
});

test('a and mx resolve to A and AAAA addresses widened by their dual CIDR lengths, and name the host', async (t) => {
  const w = await walk(t, [Z.hosts.domain]);
  if (!w) return;
  assert.deepEqual(w.problems, []);
  // mx2's 203.0.113.200 falls in mx1's /24: found twice, written once.
  assert.deepEqual([...new Set(networks(w))], Z.hosts.networks);
  const found = w.sources[0]!.networks.map((n) => `${n.term} ${n.host ?? ''} ${networkText(n.network)}`);
  assert.ok(found.includes('mx/24//64 mx2.spf.test 203.0.113.0/24'), found.join('\n'));
  assert.ok(found.includes('a:www.spf.test/28 www.spf.test 198.51.100.64/28'), found.join('\n'));
});

test('more than 10 DNS-querying terms is a warning naming the domain and the count, and every include is still walked', async (t) => {
  const w = await walk(t, [Z.many.domain]);
  if (!w) return;
  const limit = only(w, 'lookup-limit');
  assert.equal(limit.severity, 'warning');
  assert.equal(limit.domain, Z.many.domain);
  assert.match(limit.reason, /\b11 DNS-querying terms\b.*\b10\b/);
  assert.equal(w.problems.length, 1);
  assert.deepEqual(networks(w), Array.from({ length: Z.many.includes }, (_, i) => `100.64.${i + 1}.0/24`));
});

test('an mx with more than 10 MX names is a warning naming the domain, the term and the count; every host is listed', async (t) => {
  const w = await walk(t, [Z.manyMx.domain]);
  if (!w) return;
  const limit = only(w, 'mx-limit');
  assert.deepEqual([limit.severity, limit.domain, limit.term], ['warning', Z.manyMx.domain, 'mx']);
  assert.match(limit.reason, /\b11 MX names\b/);
  assert.equal(w.problems.length, 1);
  assert.deepEqual(networks(w), Array.from({ length: Z.manyMx.hosts }, (_, i) => `100.65.0.${i + 1}`));
});

test('a syntax error in a term is an error naming domain and term; the record\'s other terms are listed', async (t) => {
  const w = await walk(t, [Z.syntax.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), [['syntax', Z.syntax.domain, Z.syntax.term]]);
  assert.equal(only(w, 'syntax').severity, 'error');
  assert.deepEqual(networks(w), Z.syntax.networks);
});

test('two SPF records is an error (RFC 7208 §4.5) and neither is followed', async (t) => {
  const w = await walk(t, [Z.two.domain, Z.nested.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), [['multiple-records', Z.two.domain, undefined]]);
  assert.match(only(w, 'multiple-records').reason, /2 SPF records/);
  assert.deepEqual(new Set(networks(w)), new Set(Z.nested.networks), 'the other domain is walked');
});

test('an include of a name with no SPF record, or of no name at all, is an error naming the includer and its term', async (t) => {
  const w = await walk(t, [Z.missing.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), [
    ['no-record', Z.missing.domain, `include:${Z.missing.noSpf}`],
    ['no-record', Z.missing.domain, `include:${Z.missing.nxdomain}`],
  ]);
  assert.match(w.problems[0]!.reason, new RegExp(`${Z.missing.noSpf} has no SPF record`));
  assert.deepEqual(networks(w), Z.missing.networks);
});

test('a domain asked for without an SPF record is an error naming it', async (t) => {
  const w = await walk(t, [Z.missing.nxdomain, Z.redirect.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), [['no-record', Z.missing.nxdomain, undefined]]);
  assert.deepEqual(networks(w), Z.redirect.networks);
});

test('a bad ip4 or ip6 CIDR is an error naming domain and term; the good network beside it is listed', async (t) => {
  const w = await walk(t, [Z.badCidr.domain]);
  if (!w) return;
  assert.deepEqual(
    problems(w),
    Z.badCidr.terms.map((term) => ['bad-cidr', Z.badCidr.domain, term]),
  );
  assert.deepEqual(networks(w), Z.badCidr.networks);
});

test('an include or an a whose lookups time out is a dns-error naming domain and term; the rest is listed', async (t) => {
  const w = await walk(t, [Z.timeout.domain, Z.timeoutA.domain], { timeout: 2 });
  if (!w) return;
  assert.deepEqual(problems(w), [
    ['dns-error', Z.timeout.domain, `include:${Z.timeout.target}`],
    ['dns-error', Z.timeoutA.domain, Z.timeoutA.term],
    ['dns-error', Z.timeoutA.domain, Z.timeoutA.term],
  ]);
  assert.ok(w.problems.every((p) => /timeout \(ETIMEOUT\)$/.test(p.reason)));
  assert.deepEqual(w.problems.slice(1).map((p) => p.reason.split(' ')[0]), ['A', 'AAAA']);
  assert.deepEqual(networks(w), [...Z.timeout.networks, ...Z.timeoutA.networks]);
});

test('an a target without addresses and an mx domain without MX are warnings naming domain and term', async (t) => {
  const w = await walk(t, [Z.noAddress.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), Z.noAddress.terms.map((term) => ['no-address', Z.noAddress.domain, term]));
  assert.ok(w.problems.every((p) => p.severity === 'warning'));
  assert.deepEqual(networks(w), Z.noAddress.networks);
});

test('an include the resolver refuses is a dns-error naming domain and term', async (t) => {
  const w = await walk(t, [Z.refused.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), [['dns-error', Z.refused.domain, `include:${Z.refused.target}`]]);
  assert.match(only(w, 'dns-error').reason, /refused \(EREFUSED\)/);
  assert.deepEqual(networks(w), Z.refused.networks);
});

test('only pass terms give senders: -, ~ and ? terms and terms after all are skipped quietly; ptr, exists, macros and exp= are warnings', async (t) => {
  const w = await walk(t, [Z.quals.domain]);
  if (!w) return;
  assert.deepEqual(networks(w), Z.quals.networks);
  const source = w.sources[0]!;
  assert.deepEqual(
    source.skipped.map((s) => s.term),
    ['-ip4:192.0.2.2', '~ip4:192.0.2.3', '?ip4:192.0.2.4', `~include:${Z.nested.level2}`, 'ip4:192.0.2.5'],
  );
  assert.equal(w.sources.length, 1, 'a ~include is not walked');
  assert.deepEqual(problems(w), [
    ['unwalkable', Z.quals.domain, 'ptr'],
    ['unwalkable', Z.quals.domain, 'exists:%{i}.x.spf.test'],
    ['unwalkable', Z.quals.domain, 'include:%{d}.x.spf.test'],
    ['unwalkable', Z.quals.domain, 'exp=explain.spf.test'],
  ]);
  assert.ok(w.problems.every((p) => p.severity === 'warning'));
});

test('+all and networks wider than IPv4 /8 or IPv6 /16 are warnings naming the term, and are not listed', async (t) => {
  const w = await walk(t, [Z.wide.domain]);
  if (!w) return;
  assert.deepEqual(problems(w), [...Z.wide.terms.map((term) => ['wide-network', Z.wide.domain, term]), ['pass-all', Z.wide.domain, '+all']]);
  assert.ok(w.problems.every((p) => p.severity === 'warning'));
  assert.match(w.problems[2]!.reason, /^192\.0\.0\.0\/4 \(www\.spf\.test\) is wider than \/8; not listed$/);
  assert.deepEqual(networks(w), Z.wide.networks);
});

test('a record split into several character-strings is read as one, joined without a separator (RFC 7208 §3.3)', async (t) => {
  const w = await walk(t, [Z.chunked.domain]);
  if (!w) return;
  assert.deepEqual(w.problems, []);
  assert.deepEqual(networks(w), Z.chunked.networks);
});

test('includes nested deeper than maxDepth are an error at the include that goes too deep', async (t) => {
  const w = await walk(t, [Z.nested.domain], { maxDepth: 1 });
  if (!w) return;
  assert.deepEqual(problems(w), [['too-deep', Z.nested.level1, `include:${Z.nested.level2}`]]);
  assert.deepEqual(networks(w), ['192.0.2.0/24', '2001:db8:1::/48']);
});

test('a record reached again for another domain is walked once and points at the first walk', async (t) => {
  const w = await walk(t, [Z.nested.domain, Z.nested.level1, Z.loop.a, Z.loop.b, Z.nested.domain.toUpperCase()]);
  if (!w) return;
  assert.deepEqual(w.domains, [Z.nested.domain, Z.nested.level1, Z.loop.a, Z.loop.b], 'a domain asked for twice is walked once');
  const again = w.sources.filter((s) => s.walkedFor !== undefined).map((s) => [s.domain, s.record, s.walkedFor]);
  assert.deepEqual(again, [
    [Z.nested.level1, Z.nested.level1, Z.nested.domain],
    [Z.loop.b, Z.loop.b, Z.loop.a],
  ]);
  assert.equal(w.problems.filter((p) => p.code === 'loop').length, 1, 'the loop is reported once');
});

test('the whole zone walked at once writes a list that parseCidrListText and the policy loader take without a complaint', async (t) => {
  const domains = [Z.nested.domain, Z.loop.a, Z.redirect.domain, Z.hosts.domain, Z.many.domain, Z.manyMx.domain, Z.syntax.domain, Z.two.domain, Z.missing.domain, Z.badCidr.domain, Z.refused.domain, Z.noAddress.domain, Z.quals.domain, Z.chunked.domain, Z.wide.domain, Z.none.domain];
  const w = await walk(t, domains);
  if (!w) return;
  const { text, networks: count } = formatCidrList(w, { generatedAt: new Date('2030-01-02T03:04:05Z'), generator: 'the test' });
  const list = parseCidrListText(text, 'known-senders.cidr');
  const expected = new Set([
    ...Z.nested.networks,
    ...Z.loop.networks,
    ...Z.redirect.networks,
    ...Z.hosts.networks,
    ...Array.from({ length: Z.many.includes }, (_, i) => `100.64.${i + 1}.0/24`),
    ...Array.from({ length: Z.manyMx.hosts }, (_, i) => `100.65.0.${i + 1}`),
    ...Z.syntax.networks,
    ...Z.missing.networks,
    ...Z.badCidr.networks,
    ...Z.refused.networks,
    ...Z.noAddress.networks,
    ...Z.quals.networks,
    ...Z.chunked.networks,
    ...Z.wide.networks,
  ]);
  assert.deepEqual(list.entries.map((e) => e.value), [...list.entries.map((e) => e.value)].filter((v, i, all) => all.indexOf(v) === i), 'no network twice');
  assert.deepEqual(new Set(list.entries.map((e) => e.value)), expected);
  assert.equal(count, expected.size);
  assert.deepEqual(list.warnings, []);
  assert.ok(list.has('198.51.100.70'), 'a:www/28 covers its /28');
  assert.match(text, /^# Generated by the test at 2030-01-02T03:04:05\.000Z$/m);
  assert.match(text, new RegExp(`^# ${Z.nested.domain} via ${Z.nested.level2}$`, 'm'));

  const dir = policyDir(t, { policy: { lists: { allow: 'known-senders.cidr' } } });
  writeFileSync(join(dir, 'known-senders.cidr'), text);
  const { policy, warnings } = loadPolicyDirWithWarnings(dir);
  assert.deepEqual(warnings.filter((x) => x.message.includes('known-senders.cidr')), []);
  assert.equal(policy.lists.allow.size, expected.size);
  assert.ok(policy.lists.allow.has('2001:db8:25::1'), 'mx//64 covers its /64');
});

test('the SPF parser, walk and list writer import nothing from src/cli or src/smtp', () => {
  const dir = fileURLToPath(new URL('../../../src/policy/spf/', import.meta.url));
  const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));
  assert.ok(files.length >= 4, files.join(' '));
  for (const file of files) {
    const imports = [...readFileSync(join(dir, file), 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]!);
    assert.deepEqual(imports.filter((i) => /\/(cli|smtp)\//.test(i)), [], file);
  }
});
