/**
 * Policy directories for end-to-end tests, written by the test that uses
 * them: each test states the few keys it is about (`{ firstContact: { enabled:
 * true } }`, a block list entry) over a quiet base, so a reader sees the
 * policy next to the behaviour it asserts.
 *
 * The base relays every client at once: no DNS zones, no rDNS or HELO
 * weights, no first-contact hold, no rate limits to speak of. Its profiles'
 * delays are fractions of a second so held sessions finish quickly.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import type { TestContext } from './require-tool.js';

export type PolicyYaml = Record<string, unknown>;

export interface TestPolicy {
  /** Merged over BASE_POLICY (objects key by key; arrays and scalars replace). */
  readonly policy?: PolicyYaml;
  /** Lines of allow.cidr and block.cidr. */
  readonly allow?: readonly string[];
  readonly block?: readonly string[];
  /** Lines of known-senders.cidr (written only when given; name it with `knownSenders: { networks: 'known-senders.cidr' }`). */
  readonly known?: readonly string[];
}

export const BASE_POLICY: PolicyYaml = {
  verdicts: { tarpit: 3, reject: 8, drop: 15, rejectAt: 'rcpt' },
  lists: { allow: 'allow.cidr', block: { file: 'block.cidr', weight: 5 } },
  dnsbl: [],
  dnswl: [],
  rdns: { missing: 0, unconfirmed: 0 },
  helo: { notFqdn: 0, literalMismatch: 0, claimsUs: 0, badSyntax: 0 },
  pregreet: 8,
  protocol: { pipelining: 5, bareLf: 2, nonSmtp: 15 },
  harvest: { rejected: 1000, window: 600, weight: 8 },
  rate: { group: { ipv4: 32, ipv6: 128 }, maxConcurrent: 100000, maxPerMinute: 1000000, weight: 3 },
  // A survivor's retry counts at once and only for its own address: tests of the pause and of network passes say so.
  firstContact: { enabled: false, profile: 'first-contact', minRetryDelay: 0 },
  allowlistCache: { ttl: 3600, maxEntries: 1000, network: { enabled: false } },
  // No name lookups unless a test asks: the machine's resolver is not on loopback.
  knownSenders: { rdnsSuffixes: [] },
  tarpit: { profile: 'tarpit' },
  profiles: {
    'first-contact': { delays: { banner: 0.3, helo: 0.1, mail: 0.1, rcpt: 0.1, data: 0.2 }, end: 'allowlist' },
    tarpit: { delays: { banner: 0.3, helo: 0.2, mail: 0.2, rcpt: 0.2, data: 0.2 }, end: { reply: 554, text: '5.7.1 Held and refused by the test tarpit' } },
  },
};

/** Writes policy.yaml, allow.cidr and block.cidr (and known-senders.cidr when given) into `dir` (overwriting them). */
export function writePolicy(dir: string, spec: TestPolicy = {}): void {
  writeFileSync(join(dir, 'policy.yaml'), policyText(spec.policy));
  writeFileSync(join(dir, 'allow.cidr'), listText(spec.allow));
  writeFileSync(join(dir, 'block.cidr'), listText(spec.block));
  if (spec.known) writeFileSync(join(dir, 'known-senders.cidr'), listText(spec.known));
}

/** policy.yaml's text for BASE_POLICY with `overrides` merged in. */
export function policyText(overrides: PolicyYaml = {}): string {
  return stringify(merge(BASE_POLICY, overrides));
}

export function listText(lines: readonly string[] = []): string {
  return ['# written by the test', ...lines, ''].join('\n');
}

/** A fresh policy directory for one test, removed when the test ends. */
export function policyDir(t: TestContext, spec: TestPolicy = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-policy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writePolicy(dir, spec);
  return dir;
}

/** `b` over `a`, objects key by key (arrays and scalars replace). */
export function merge(a: PolicyYaml, b: PolicyYaml): PolicyYaml {
  const out: PolicyYaml = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isObject(v) && isObject(prev) ? merge(prev, v) : v;
  }
  return out;
}

function isObject(v: unknown): v is PolicyYaml {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
