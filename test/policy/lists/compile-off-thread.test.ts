/**
 * Lists compiled in a worker thread (issue 12): the same answers as on the
 * caller's thread, for a list big enough that the compact index matters, and
 * the same located errors for a bad one.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { buildFromText } from '../../../src/policy/lists/cidr-build.js';
import { cidrListFromData, parseCidrListText } from '../../../src/policy/lists/cidr-list.js';
import { compileListsOffThread, ListWorkerError } from '../../../src/policy/lists/compile-off-thread.js';

const LINES = 200_000;

/** A big list as admins load them: mostly /32 and /24, some IPv6 /48 and /128, a few wide blocks, comments. */
function bigList(): { text: string; v4: string[]; v6: string[] } {
  const lines: string[] = ['# generated'];
  const v4: string[] = [];
  const v6: string[] = [];
  for (let i = 0; i < LINES; i++) {
    const a = 11 + (i % 200);
    const b = (i >> 8) & 255;
    const c = i & 255;
    if (i % 10 < 6) {
      lines.push(`${a}.${b}.${c}.${(i * 7) & 255}`);
      v4.push(`${a}.${b}.${c}.${(i * 7) & 255}`);
    } else if (i % 10 < 9) {
      lines.push(`${a}.${b}.${c}.0/24`);
      v4.push(`${a}.${b}.${c}.77`);
    } else if (i % 20 === 9) {
      lines.push(`2001:db8:${(i & 0xffff).toString(16)}::/48`);
      v6.push(`2001:db8:${(i & 0xffff).toString(16)}:ffff::1`);
    } else {
      lines.push(`2001:db8:ffff:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`);
      v6.push(`2001:db8:ffff:${(i >> 16).toString(16)}::${(i & 0xffff).toString(16)}`);
    }
  }
  lines.push('100.64.0.0/10', '# the end', '');
  return { text: lines.join('\n'), v4, v6 };
}

describe(`a ${LINES.toLocaleString('en')}-line list`, () => {
  const { text, v4, v6 } = bigList();

  test('compiles on this thread: members of both families found, neighbours not', () => {
    const list = parseCidrListText(text, 'big.cidr');
    assert.equal(list.size, LINES + 1);
    for (let i = 0; i < v4.length; i += 997) assert.equal(list.has(v4[i]!), true, v4[i]);
    for (let i = 0; i < v6.length; i += 97) assert.equal(list.has(v6[i]!), true, v6[i]);
    for (const miss of ['10.0.0.1', '211.0.0.1', '11.0.0.1', '192.0.2.1', '2001:db8:fffe::1', '2001:db9::1', '::1']) assert.equal(list.has(miss), false, miss);
    assert.equal(list.has('100.127.255.255'), true);
    assert.equal(list.match('100.64.0.1')?.line, LINES + 2);
    // The lowest line wins where entries overlap; a /24 line comes after its /32 neighbours' lines.
    assert.equal(list.match('11.0.0.0')?.value, '11.0.0.0');
    assert.equal(list.match('::ffff:11.0.0.0')?.line, 2);
  });

  test('compiles in a worker to the same answers, its bytes moved there and the index moved back', async () => {
    const bytes = new TextEncoder().encode(text);
    const [outcome] = await compileListsOffThread([{ bytes, source: 'big.cidr', maxErrors: 20 }]);
    assert.equal(bytes.byteLength, 0, 'the bytes were transferred, not copied');
    assert.ok(outcome?.ok, JSON.stringify(outcome));
    const list = cidrListFromData(outcome.data, 'big.cidr', outcome.warnings);
    const here = parseCidrListText(text, 'big.cidr');
    assert.equal(list.size, here.size);
    const probes = [...v4.filter((_, i) => i % 101 === 0), ...v6.filter((_, i) => i % 11 === 0), '10.0.0.1', '192.0.2.1', '2001:db9::1', '100.100.0.1'];
    for (const p of probes) assert.deepEqual(list.match(p), here.match(p), p);
  });
});

test('a worker reports bad lines with line, column and reason, as the loader prints them', async () => {
  const text = '# x\n192.0.2.0/24\n  mail.example.com\n10.0.0.0/33\n';
  const [outcome] = await compileListsOffThread([{ bytes: new TextEncoder().encode(text), source: 'b.cidr', maxErrors: 20 }]);
  assert.deepEqual(outcome, buildFromText(text, 'b.cidr', 20));
  assert.ok(outcome && !outcome.ok);
  assert.deepEqual(
    outcome.errors.map((e) => [e.line, e.column, e.reason]),
    [
      [3, 3, 'not an IP address: "mail.example.com"'],
      [4, 1, 'prefix /33 out of range for ipv4 (0-32)'],
    ],
  );
});

test('host bits and repeated lines are noted in line order, as written', () => {
  const outcome = buildFromText('192.0.2.0/24\n192.0.2.77/24\n2001:db8::/32\n 192.0.2.0/24\n2001:DB8::/32\n::ffff:192.0.2.0/120\n', 'n.cidr');
  assert.ok(outcome.ok);
  assert.deepEqual(
    outcome.warnings.map((w) => [w.line, w.column, w.kind, w.reason]),
    [
      [2, 1, 'hostBits', 'host bits set in 192.0.2.77/24; matching the whole /24'],
      [4, 2, 'duplicate', '192.0.2.0/24 is already on line 1'],
      [6, 1, 'duplicate', '::ffff:192.0.2.0/120 is already on line 1'],
    ],
  );
});

test('a cancelled compile ends its worker and rejects', async () => {
  const abort = new AbortController();
  const compiling = compileListsOffThread([{ bytes: new TextEncoder().encode(bigList().text), source: 'big.cidr', maxErrors: 20 }], abort.signal);
  abort.abort();
  await assert.rejects(compiling, (err: unknown) => err instanceof ListWorkerError && /cancelled/.test(err.message));
});

describe('nested and repeated blocks: the index agrees with a scan of every entry', () => {
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 2 ** 32;
    };
  }
  for (const seed of [11, 12, 13]) {
    test(`seed ${seed}`, () => {
      const r = rng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
      // Few distinct values and every prefix length: blocks nest, touch and repeat.
      const v4 = (): string => `10.${pick([0, 1, 128, 255])}.${pick([0, 7, 128, 255])}.${pick([0, 1, 64, 255])}`;
      const v6 = (): string => `2001:db8:${pick(['0', '1', '8000', 'ffff'])}::${pick(['0', '1', 'ffff'])}`;
      const lines: string[] = [];
      for (let i = 0; i < 400; i++) lines.push(r() < 0.6 ? `${v4()}/${Math.floor(r() * 33)}` : `${v6()}/${Math.floor(r() * 129)}`);
      const list = parseCidrListText(lines.join('\n'), 'r.cidr');
      const single = list.entries.map((e) => ({ line: e.line, list: parseCidrListText(`${e.address}/${e.prefix}`, 'one') }));
      for (let i = 0; i < 1000; i++) {
        const probe = r() < 0.6 ? v4() : v6();
        const scanned = single.find((e) => e.list.has(probe));
        assert.equal(list.match(probe)?.line, scanned?.line, `seed ${seed}: ${probe}`);
      }
    });
  }
});
