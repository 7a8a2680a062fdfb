/**
 * Fuzzes the policy loader (issue 3: "every bad file gives a located error,
 * none crashes"): random bytes, YAML token soup, mutations and truncations of
 * the shipped policy.yaml and of CIDR list text. Every case either loads or
 * throws PolicyErrors whose every entry names a file, line and column;
 * nothing else may be thrown and no case may take long.
 *
 * Seeded, so a failure reproduces: FUZZ_SEED=<seed> reruns that sequence;
 * the failure message names the seed, the case and its input.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { loadPolicyText } from '../../src/policy/load.js';
import { PolicyErrors } from '../../src/policy/policy-error.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x7a4b17);
const SHIPPED = readFileSync('policies/policy.yaml', 'utf8');

/** The shipped policy with every kind of value in use: zones, answers, both list forms, a reply profile. */
const RICH = SHIPPED.replace(
  'dnsbl: []',
  'dnsbl:\n  - zone: zen.example.org\n    weight: 8\n    answers: ["127.0.0.2-127.0.0.11", "127.0.1.0/24", "127.0.0.20"]\n    timeout: 1.5\n  - { zone: bl.example.net, weight: 2 }',
).replace('dnswl: []', 'dnswl:\n  - zone: wl.example.org\n    weight: -5\n    answers: ["127.0.0.0/16"]');

const LIST = [
  '# partners',
  '192.0.2.0/24',
  '  198.51.100.7   # one host',
  '2001:db8::/32',
  '::ffff:203.0.113.0/120',
  '10.1.2.3/8',
  '',
  '::1',
  '0.0.0.0/0',
  'fe80::/10',
].join('\n');

/** mulberry32: small, fast, good enough to pick mutations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(SEED);
const int = (n: number) => Math.floor(random() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;

/** Pieces that steer random input into YAML structure and the schema's keys. */
const TOKENS = [
  ':', ': ', '- ', '\n', '\n  ', '\n    ', ' ', '{', '}', '[', ']', ',', '"', "'", '#', '&a ', '*a', '!!str ', '!!binary ', '!tag ', '|\n', '>\n', '? ', '---\n', '...\n', '%YAML 1.2\n',
  '<<: *a', '~', 'null', 'true', 'yes', '.inf', '-.inf', '.nan', '0x1f', '1e999', '-1', '0', '3', '300', '301', '2.5', '\t', '\r', '\r\n', '\u0000', '\ufeff', '\u2028', 'é', '😀',
  'verdicts', 'tarpit', 'reject', 'drop', 'rejectAt', 'rcpt', 'lists', 'allow', 'block', 'file', 'weight', 'allow.cidr', 'block.cidr', '../block.cidr', '/dev/null', 'dnsbl', 'dnswl',
  'zone', 'answers', 'timeout', '127.0.0.2-127.0.0.11', '127.0.0.0/24', '::1', 'profiles', 'profile', 'first-contact', 'delays', 'banner', 'end', 'allowlist', 'reply', '451', 'text',
  'firstContact', 'enabled', '__proto__', 'constructor', 'toString', 'hasOwnProperty',
];
const LIST_TOKENS = ['/', '.', ':', '::', '#', ' ', '\t', '\n', '\r\n', '%eth0', '/24', '/129', '/0', '/-1', '255', '256', '0', 'ffff', '::ffff:', '1.2.3.4', 'g', '\u0000', 'é', '-'];

function randomBytes(): string {
  const bytes = Buffer.alloc(int(1500));
  for (let i = 0; i < bytes.length; i++) bytes[i] = int(256);
  return random() < 0.5 ? bytes.toString('utf8') : bytes.toString('latin1');
}

function soup(tokens: readonly string[]): string {
  return Array.from({ length: int(120) }, () => pick(tokens)).join('');
}

function mutate(text: string, tokens: readonly string[]): string {
  let out = text;
  for (let n = 1 + int(4); n > 0; n--) {
    const at = int(out.length + 1);
    const lines = out.split('\n');
    switch (int(7)) {
      case 0: // flip one character
        out = out.slice(0, at) + String.fromCharCode(int(128)) + out.slice(at + 1);
        break;
      case 1: // insert a token
        out = out.slice(0, at) + pick(tokens) + out.slice(at);
        break;
      case 2: // delete a span
        out = out.slice(0, at) + out.slice(at + 1 + int(40));
        break;
      case 3: // duplicate a line
        lines.splice(int(lines.length), 0, pick(lines));
        out = lines.join('\n');
        break;
      case 4: // swap two lines
        {
          const i = int(lines.length);
          const j = int(lines.length);
          [lines[i], lines[j]] = [lines[j] ?? '', lines[i] ?? ''];
          out = lines.join('\n');
        }
        break;
      case 5: // re-indent a line
        {
          const i = int(lines.length);
          lines[i] = ' '.repeat(int(6)) + (lines[i] ?? '').trimStart();
          out = lines.join('\n');
        }
        break;
      default: // replace a number
        out = out.replace(/\d+(\.\d+)?/, () => pick(['-1', '0', '0.5', '301', '1e400', '99999999999999999999', 'x', '', '-0', '12.', '.5']));
    }
  }
  return out;
}

interface Case {
  readonly kind: string;
  readonly policy: string;
  readonly lists: Readonly<Record<string, string>>;
}

function cases(): Case[] {
  const lists = { 'allow.cidr': LIST, 'block.cidr': '# none\n' };
  const out: Case[] = [];
  for (let i = 0; i < 400; i++) out.push({ kind: 'random bytes', policy: randomBytes(), lists });
  for (let i = 0; i < 400; i++) out.push({ kind: 'token soup', policy: soup(TOKENS), lists });
  for (let i = 0; i < 1200; i++) out.push({ kind: 'mutated policy', policy: mutate(pick([SHIPPED, RICH]), TOKENS), lists });
  for (const base of [SHIPPED, RICH]) {
    for (let at = 0; at <= base.length; at += 7 + int(5)) out.push({ kind: 'truncated policy', policy: base.slice(0, at), lists });
  }
  for (let i = 0; i < 300; i++) out.push({ kind: 'random list', policy: RICH, lists: { 'allow.cidr': randomBytes(), 'block.cidr': soup(LIST_TOKENS) } });
  for (let i = 0; i < 600; i++) out.push({ kind: 'mutated list', policy: RICH, lists: { 'allow.cidr': mutate(LIST, LIST_TOKENS), 'block.cidr': mutate(LIST, LIST_TOKENS) } });
  for (let at = 0; at <= LIST.length; at++) out.push({ kind: 'truncated list', policy: RICH, lists: { 'allow.cidr': LIST.slice(0, at), 'block.cidr': LIST.slice(at) } });
  return out;
}

/** Why a case's outcome is not acceptable (undefined when it is), and whether it loaded. */
function verdictOn(c: Case): { problem: string | undefined; loaded: boolean } {
  const problem = (p: string | undefined) => ({ problem: p, loaded: false });
  try {
    const { policy } = loadPolicyText(c.policy, {
      dir: 'fz',
      readFile: (path) => {
        const text = c.lists[basename(path)];
        if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
        return text;
      },
    });
    if (!Object.isFrozen(policy) || typeof policy.lists.allow.has !== 'function') return problem('loaded a policy that is not frozen or has no lists');
    return { problem: undefined, loaded: true };
  } catch (err) {
    if (!(err instanceof PolicyErrors)) return problem(`threw ${String(err)}${err instanceof Error && err.stack ? `\n${err.stack}` : ''}`);
    if (err.errors.length === 0) return problem('threw PolicyErrors without errors');
    for (const e of err.errors) {
      // Every list is handed in, so every error is about content and must have a line.
      if (!e.file || !Number.isInteger(e.line) || (e.line ?? 0) < 1 || !Number.isInteger(e.column) || (e.column ?? 0) < 1) return problem(`unlocated error: ${e.message}`);
      if (!e.message.startsWith(`${e.file}:${e.line}:${e.column}: `)) return problem(`badly formatted: ${e.message}`);
      if (!['fz/policy.yaml', 'fz/allow.cidr', 'fz/block.cidr'].includes(e.file)) return problem(`error names an unknown file: ${e.message}`);
    }
    return problem(undefined);
  }
}

test(`the policy loader either loads or reports located errors, for random and broken input (FUZZ_SEED=${SEED})`, { timeout: 30_000 }, () => {
  const all = cases();
  assert.ok(all.length > 3000, `only ${all.length} cases`);
  let loaded = 0;
  for (const [i, c] of all.entries()) {
    const started = performance.now();
    const { problem, loaded: ok } = verdictOn(c);
    const took = performance.now() - started;
    if (ok) loaded++;
    if (problem !== undefined) {
      assert.fail(`case ${i} (${c.kind}, FUZZ_SEED=${SEED}): ${problem}\npolicy: ${JSON.stringify(c.policy)}\nlists: ${JSON.stringify(c.lists)}`);
    }
    // Catches a pathological parse, not a loaded machine's GC pause or lost time slice.
    if (took > 5000) assert.fail(`case ${i} (${c.kind}, FUZZ_SEED=${SEED}) took ${took.toFixed(0)} ms\npolicy: ${JSON.stringify(c.policy)}`);
  }
  // A fuzzer that never gets past the parser proves little.
  assert.ok(loaded > 200, `only ${loaded} of ${all.length} cases loaded: the mutations are too coarse to reach the semantic checks`);
});
