/**
 * `smtp-tarpit explain` runs the real checks through the resolver the
 * configuration names (here a real dnsmasq serving the test zone) and prints
 * what the policy would do.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sharedDnsServer, TEST_DNS } from '../helpers/dns-server.js';
import { requireTool, type TestContext } from '../helpers/require-tool.js';
import { explain } from '../../src/cli/explain.js';
import { clientGroup } from '../../src/state/client-group.js';
import { MemoryStore } from '../../src/state/memory-store.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];
const dns = sharedDnsServer();

function run(...args: string[]) {
  return spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
}

/** A config pointing at the test DNS server and a copy of the shipped policies with a DNSBL and a DNSWL zone. */
async function setup(t: TestContext): Promise<{ config: string; policies: string }> {
  const server = await dns.get();
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-explain-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const policies = join(dir, 'policies');
  cpSync('policies', policies, { recursive: true });
  const policy = readFileSync(join(policies, 'policy.yaml'), 'utf8')
    .replace(/^dnsbl: \[\].*$/m, `dnsbl:\n  - { zone: ${TEST_DNS.bl}, weight: 10, answers: ["127.0.0.2-127.0.0.11"], timeout: 5 }`)
    .replace(/^dnswl: \[\].*$/m, `dnswl:\n  - { zone: ${TEST_DNS.wl}, weight: -5, timeout: 5 }`);
  writeFileSync(join(policies, 'policy.yaml'), policy);
  writeFileSync(join(policies, 'block.cidr'), '127.0.1.0/24\n');
  const config = join(dir, 'smtp-tarpit.yaml');
  writeFileSync(config, `hostname: tarpit.test\npolicies: policies\ndns: { servers: ["${server.address}"], timeout: 5 }\n`);
  return { config, policies };
}

test('explain shows a DNSBL listing, the score and a refusal at RCPT that names the reason class', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const { config } = await setup(t);
  const r = run('explain', '--config', config, '--ip', TEST_DNS.listed.ipv4, '--helo', 'mx.example.org', '--json');
  assert.equal(r.status, 0, r.stderr);
  const e = JSON.parse(r.stdout) as {
    verdict: string;
    score: number;
    path: string;
    evidence: { check: string; weight: number }[];
    lookups: { zone: string; result: string }[];
    stages: { stage: string; outcome: string; reply?: string }[];
  };
  assert.equal(e.verdict, 'reject');
  assert.equal(e.path, 'hold');
  assert.ok(e.evidence.some((x) => x.check === 'dnsbl' && x.weight === 10));
  assert.deepEqual(
    e.lookups.map((l) => `${l.zone} ${l.result}`).sort(),
    [`${TEST_DNS.bl} listed`, `${TEST_DNS.wl} not-listed`],
  );
  const last = e.stages[e.stages.length - 1];
  assert.deepEqual(last, { stage: 'rcpt', outcome: 'refused', reply: '550 5.7.1 Client address is listed on a DNS blocklist' });
  assert.doesNotMatch(r.stdout, /"reply": ".*\d+ points/);
});

test('explain, text form: a blocked client with a confirmed name is held by the tarpit profile; a DNSWL client skips first contact', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const { config } = await setup(t);
  const blocked = run('explain', '--config', config, '--ip', TEST_DNS.rdns.confirmed.address);
  assert.equal(blocked.status, 0, blocked.stderr);
  assert.match(blocked.stdout, new RegExp(`FCrDNS name: ${TEST_DNS.rdns.confirmed.name}`));
  assert.match(blocked.stdout, /block\s+\+5\s+listed in .*block\.cidr:1 \(127\.0\.1\.0\/24\)/);
  assert.match(blocked.stdout, /verdict tarpit/);
  assert.match(blocked.stdout, /path: hold \(profile tarpit\)/);
  assert.match(blocked.stdout, /connect\s+held 25 s/);

  const vouched = run('explain', '--config', config, '--ip', TEST_DNS.listed.allowlisted, '--json');
  assert.equal(vouched.status, 0, vouched.stderr);
  const v = JSON.parse(vouched.stdout) as { verdict: string; firstContact: boolean; path: string; score: number };
  assert.deepEqual({ verdict: v.verdict, firstContact: v.firstContact, path: v.path }, { verdict: 'pass', firstContact: false, path: 'relay' });
  assert.ok(v.score < 0);
});

test('explain refuses a bad address and reports a broken policy with file:line', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const { config, policies } = await setup(t);
  assert.equal(run('explain', '--config', config, '--ip', 'mx.example.org').status, 1);
  writeFileSync(join(policies, 'allow.cidr'), '# ok\n10.0.0.0/33\n');
  const r = run('explain', '--config', config, '--ip', '192.0.2.1');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /allow\.cidr:2:\d+: lists\.allow: .*prefix/);
});

test('explain shows the greylisting state of a triplet and the reputation, and changes neither', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const { config, policies } = await setup(t);
  const policyFile = join(policies, 'policy.yaml');
  writeFileSync(
    policyFile,
    readFileSync(policyFile, 'utf8')
      .replace(/^ {2}enabled: false {18}# true to greylist$/m, '  enabled: true')
      .replace(/^(firstContact:.*\n {2}enabled:) true/m, '$1 false'),
  );
  writeFileSync(join(policies, 'block.cidr'), '');
  const store = new MemoryStore();
  const ip = TEST_DNS.rdns.confirmed.address;
  const triplet = { network: clientGroup(ip, { ipv4: 24, ipv6: 64 }), sender: 'a@example.org', recipient: 'b@example.net' };
  const settings = { minDelay: 300, pendingExpiry: 14400, passedExpiry: 3024000 };
  const seen = Date.now() - 60_000;
  assert.equal(store.greylist(triplet, settings, seen), 'new');
  for (let i = 0; i < 6; i++) store.finish(triplet.network, 'bad', Date.now());
  const args = { config, ip, from: 'A@Example.org', rcpt: 'b@example.net' };
  const e = await explain(args, store);
  assert.deepEqual(e.greylisting, { enabled: true, triplet, state: 'pending', since: new Date(seen).toISOString(), exempt: undefined });
  assert.ok(e.reputation !== undefined && e.reputation.bad > 5.9, 'the network\'s history as the store holds it');
  assert.ok(e.evidence.some((x) => x.check === 'reputation' && x.weight === 2), 'and it weighs');
  // Looking changed nothing: the triplet is still pending from the same first sight, and no session was counted.
  assert.deepEqual(store.peekGreylist(triplet, settings, Date.now()), { state: 'pending', since: seen });
  assert.equal(store.connect({ client: ip, group: triplet.network, count: false }, Date.now()).rate.perMinute, 0);

  const text = run('explain', '--config', config, '--ip', ip, '--from', 'a@example.org', '--rcpt', 'b@example.net');
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /greylisting \(127\.0\.\d+\.0\/24, a@example\.org, b@example\.net\): not seen; its RCPT would get 451 4.7.1 Greylisted/);
  const vouched = run('explain', '--config', config, '--ip', TEST_DNS.listed.allowlisted, '--from', 'a@example.org', '--rcpt', 'b@example.net');
  assert.match(vouched.stdout, /greylisting .*: not seen; exempt: a known sender \(knownSenders.trustedBelow\)/);
  assert.match(vouched.stdout, /^known sender \(knownSenders.trustedBelow\): no first-contact hold, no greylisting$/m);
});

test('explain names the known-sender rule that vouches: a forward-confirmed name under a shipped suffix meets no first-contact hold', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const { config } = await setup(t);
  const e = await explain({ config, ip: TEST_DNS.knownSender.address, helo: TEST_DNS.knownSender.name });
  assert.equal(e.client.name, TEST_DNS.knownSender.name);
  assert.equal(e.knownSender, 'knownSenders.rdnsSuffixes: google.com');
  assert.equal(e.firstContact, false);
  assert.equal(e.path, 'relay');
  assert.deepEqual(e.advice, [], 'relayed at once: nothing to change');
  assert.ok(e.evidence.some((x) => x.check === 'known-sender' && x.reason === `forward-confirmed name ${TEST_DNS.knownSender.name} is under google.com: knownSenders.rdnsSuffixes`));
});

test('explain, for a local test with swaks\' defaults (no PTR, a bare HELO): held, and the shortest changes that would relay it', async (t) => {
  if (!requireTool(t, 'dnsmasq')) return;
  const { config } = await setup(t);
  // No PTR: the test zone answers NXDOMAIN for every loopback address it does not name (127.0.1.0/24 is blocked in setup).
  const local = '127.0.2.77';
  const r = run('explain', '--config', config, '--ip', local, '--helo', 'box');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /score 3 -> verdict tarpit/);
  const advice = r.stdout.slice(r.stdout.indexOf('to have it relayed at once:'));
  assert.match(advice, /^ {2}list 127\.0\.2\.77 in policies\/allow\.cidr \(a partner: no checks, no hold\)$/m);
  assert.match(advice, /^ {2}or send a fully qualified HELO name \(swaks: --helo mail\.example\.org\) \(helo\.notFqdn \+1\): score 2, below verdicts\.tarpit \(3\); then as a first contact .*60 s or more after the 451/m);
  assert.match(advice, /^ {2}or give it a PTR record whose name resolves back to it \(rdns \+2\): score 1/m);
});
