import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkAllow, checkBlock } from '../../../src/policy/checks/lists.js';
import net from 'node:net';
import { parseCidrListText, type CidrEntry, type CidrList } from '../../../src/policy/lists/cidr-list.js';
import type { Policy } from '../../../src/policy/spec.js';

const ALLOW = parseCidrListText(
  ['# trusted relays', '192.0.2.0/24', '198.51.100.7', '2001:db8:aa::/48', '::ffff:203.0.113.0/120'].join('\n'),
  'allow.cidr',
);
const BLOCK = parseCidrListText(['', '# spam sources', '10.0.0.0/8', '10.1.0.0/16', '2001:db8:bad::/64', '10.1.2.3'].join('\n'), 'block.cidr');
const EMPTY = parseCidrListText('# nothing yet\n', 'empty.cidr');

function lists(allow: CidrList, block: CidrList, weight = 5): Pick<Policy, 'lists'> {
  return { lists: { allow, block: { list: block, weight } } };
}

describe('checkAllow', () => {
  const policy = lists(ALLOW, EMPTY);
  const cases: [address: string, line: number | undefined][] = [
    ['192.0.2.9', 2],
    ['::ffff:192.0.2.9', 2],
    ['198.51.100.7', 3],
    ['198.51.100.8', undefined],
    ['2001:db8:aa:ffff::1', 4],
    ['2001:db8:ab::1', undefined],
    ['203.0.113.44', 5], // a mapped-IPv6 entry matches the plain IPv4 client
    ['::ffff:203.0.113.44', 5],
    ['not-an-ip', undefined],
  ];
  for (const [address, line] of cases) {
    test(`${address} -> ${line === undefined ? 'not allowlisted' : `allow.cidr:${line}`}`, () => {
      const evidence = checkAllow(address, policy);
      if (line === undefined) return assert.equal(evidence, undefined);
      assert.ok(evidence);
      assert.equal(evidence.check, 'allow');
      assert.equal(evidence.class, 'allowlisted');
      assert.equal(evidence.weight, 0);
      assert.match(evidence.reason, new RegExp(`^listed in allow\\.cidr:${line} \\(`));
    });
  }
});

describe('checkBlock', () => {
  test('gives blocklisted evidence with the policy weight, naming file, line and entry', () => {
    const evidence = checkBlock('10.200.1.1', lists(EMPTY, BLOCK, 5));
    assert.deepEqual(evidence, { check: 'block', weight: 5, class: 'blocklisted', reason: 'listed in block.cidr:3 (10.0.0.0/8)' });
  });
  test('the first line that holds the client wins, whatever its prefix', () => {
    // 10.1.2.3 is in lines 3 (/8), 4 (/16) and 6 (/32).
    assert.match(checkBlock('10.1.2.3', lists(EMPTY, BLOCK))?.reason ?? '', /block\.cidr:3 /);
    const reordered = parseCidrListText('10.1.2.3\n10.0.0.0/8\n', 'b.cidr');
    assert.match(checkBlock('10.1.2.3', lists(EMPTY, reordered))?.reason ?? '', /b\.cidr:1 \(10\.1\.2\.3\)/);
  });
  test('IPv6 and IPv4-mapped clients', () => {
    assert.match(checkBlock('2001:db8:bad::25', lists(EMPTY, BLOCK))?.reason ?? '', /block\.cidr:5 /);
    assert.match(checkBlock('::ffff:10.9.9.9', lists(EMPTY, BLOCK))?.reason ?? '', /block\.cidr:3 /);
    assert.equal(checkBlock('2001:db8:bad:1::25', lists(EMPTY, BLOCK)), undefined);
  });
  test('not listed, or weight 0: no evidence', () => {
    assert.equal(checkBlock('192.0.2.1', lists(EMPTY, BLOCK)), undefined);
    assert.equal(checkBlock('10.0.0.1', lists(EMPTY, BLOCK, 0)), undefined);
  });
});

describe('CidrList.match', () => {
  test('host bits set in an entry match the whole network, as has() does', () => {
    const list = parseCidrListText('192.0.2.77/24\n', 'x.cidr');
    assert.equal(list.match('192.0.2.1')?.line, 1);
    assert.equal(list.match('192.0.3.1'), undefined);
  });
  test('odd prefixes and /0', () => {
    const list = parseCidrListText('198.51.100.128/25\n2001:db8::/29\n::/0\n', 'x.cidr');
    assert.equal(list.match('198.51.100.200')?.line, 1);
    assert.equal(list.match('198.51.100.100'), undefined);
    assert.equal(list.match('2001:dbf::1')?.line, 2);
    assert.equal(list.match('2001:dc0::1')?.line, 3);
  });
  test('finds the first matching line among 10,000 entries', () => {
    const lines: string[] = [];
    for (let i = 0; i < 10_000; i++) lines.push(i % 2 === 0 ? `10.${(i >> 8) & 255}.${i & 255}.0/24` : `2001:db8:${i.toString(16)}::/48`);
    const list = parseCidrListText(lines.join('\n'), 'big.cidr');
    const probes = ['10.0.2.9', '10.0.3.9', '10.39.14.1', '2001:db8:1::1', '2001:db8:2::1', '2001:db8:270f::1', '192.0.2.1'];
    for (const p of probes) {
      const entry = list.match(p);
      assert.equal(entry?.line, oracle(list.entries, p), p);
      if (entry) assert.equal(lines[entry.line - 1], entry.value);
    }
    // Speed is measured by bench/verdict.ts, not asserted here.
  });
});

describe('CidrList.match agrees with net.BlockList, one entry at a time and family by family', () => {
  test('except that an IPv6 entry never matches an IPv4 client (net.BlockList maps IPv4 into IPv6 rules)', () => {
    // `::/0` written to mean "all of IPv6" must not allowlist all of IPv4.
    const list = parseCidrListText('::/0\n', 'v6.cidr');
    assert.equal(list.match('2001:db8::1')?.line, 1);
    assert.equal(list.match('192.0.2.1'), undefined);
    assert.equal(checkAllow('192.0.2.1', lists(list, EMPTY)), undefined);
    // An entry written as mapped IPv6 is meant for IPv4 clients and does match them.
    assert.equal(parseCidrListText('::ffff:0.0.0.0/96\n', 'm.cidr').match('192.0.2.1')?.line, 1);
  });

  // A small seeded generator: a failure names its seed and replays.
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return s / 2 ** 32;
    };
  }
  for (const seed of [1, 2, 3, 4, 5]) {
    test(`random lists and probes, seed ${seed}`, () => {
      const r = rng(seed);
      const byte = (): number => Math.floor(r() * 4) * 64 + Math.floor(r() * 2); // few distinct values: many hits
      const v4 = (): string => [byte(), byte(), byte(), byte()].join('.');
      const v6 = (): string => `2001:db8:${byte().toString(16)}:${byte().toString(16)}::${byte().toString(16)}`;
      const lines: string[] = [];
      for (let i = 0; i < 60; i++) {
        if (r() < 0.5) lines.push(`${v4()}/${r() < 0.05 ? Math.floor(r() * 33) : 20 + Math.floor(r() * 13)}`);
        // IPv6 prefixes from /16: shorter ones would be mostly 2001:db8 hits.
        else if (r() < 0.8) lines.push(`${v6()}/${r() < 0.05 ? 16 + Math.floor(r() * 113) : 50 + Math.floor(r() * 79)}`);
        else lines.push(`::ffff:${v4()}/${116 + Math.floor(r() * 13)}`);
      }
      const list = parseCidrListText(lines.join('\n'), 'random.cidr');
      let hits = 0;
      for (let i = 0; i < 500; i++) {
        const probe = r() < 0.4 ? v4() : r() < 0.5 ? `::ffff:${v4()}` : v6();
        const entry = list.match(probe);
        if (entry) hits++;
        assert.equal(entry?.line, oracle(list.entries, probe), `seed ${seed}: ${probe}`);
        assert.equal(list.has(probe), entry !== undefined);
      }
      // Both answers must be exercised, or agreeing proves nothing.
      assert.ok(hits > 50 && hits < 450, `${hits} of 500 probes listed`);
    });
  }
});

/**
 * An independent answer: the first entry whose own one-rule net.BlockList holds
 * the probe, families kept apart (BlockList alone would test IPv4 probes against
 * IPv6 rules as ::ffff:a.b.c.d), mapped probes folded to IPv4.
 */
function oracle(entries: readonly CidrEntry[], probe: string): number | undefined {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(probe);
  const address = mapped?.[1] ?? probe;
  const family = net.isIPv4(address) ? 'ipv4' : 'ipv6';
  for (const e of entries) {
    if (e.family !== family) continue;
    const one = new net.BlockList();
    one.addSubnet(e.address, e.prefix, e.family);
    if (one.check(address, family)) return e.line;
  }
  return undefined;
}
