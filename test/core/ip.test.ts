import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { bytesToUint, foldMapped, formatIp, ipv4ToUint, isIpv4Mapped, parseIp, sameIp, uintToIpv4 } from '../../src/core/ip.js';

function ip(text: string, options?: { keepMapped?: boolean }) {
  const parsed = parseIp(text, options);
  assert.ok(parsed, `${text} parses`);
  return parsed;
}

describe('parseIp', () => {
  test('IPv4, IPv6, and IPv4-mapped IPv6 folded to IPv4 (dotted or hex tail)', () => {
    assert.deepEqual(parseIp('192.0.2.1'), { family: 'ipv4', bytes: Uint8Array.from([192, 0, 2, 1]) });
    assert.deepEqual(parseIp('::ffff:192.0.2.1'), { family: 'ipv4', bytes: Uint8Array.from([192, 0, 2, 1]) });
    assert.deepEqual(parseIp('::FFFF:c000:024d'), { family: 'ipv4', bytes: Uint8Array.from([192, 0, 2, 77]) });
    assert.equal(parseIp('2001:db8::1')?.family, 'ipv6');
    assert.equal(parseIp('::192.0.2.1')?.family, 'ipv6', 'IPv4-compatible (not mapped) stays IPv6');
  });

  test('a zone id is dropped', () => {
    assert.deepEqual(parseIp('fe80::1%eth0'), parseIp('fe80::1'));
  });

  test('an embedded dotted quad is the last 32 bits, with or without ::', () => {
    assert.deepEqual(ip('1:2:3:4:5:6:1.2.3.4').bytes, Uint8Array.from([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4]));
    assert.deepEqual(ip('::1.2.3.4').bytes, Uint8Array.from([...new Array<number>(12).fill(0), 1, 2, 3, 4]));
  });

  test('anything else is not an address', () => {
    for (const bad of ['', 'mx.example.org', '1.2.3', '256.1.1.1', '999.0.0.1', '2001:db8::1::2', '[::1]', '/run/smtp.sock']) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  test('keepMapped leaves ::ffff: addresses IPv6; foldMapped folds them later', () => {
    const mapped = ip('::ffff:192.0.2.1', { keepMapped: true });
    assert.equal(mapped.family, 'ipv6');
    assert.equal(isIpv4Mapped(mapped), true);
    assert.deepEqual(foldMapped(mapped), { family: 'ipv4', bytes: Uint8Array.from([192, 0, 2, 1]) });
    const other = ip('::192.0.2.1');
    assert.equal(isIpv4Mapped(other), false);
    assert.equal(foldMapped(other), other, 'any other address is returned unchanged');
    assert.equal(isIpv4Mapped(ip('192.0.2.1')), false);
  });
});

describe('formatIp writes dotted quads and RFC 5952 IPv6', () => {
  const cases: [string, string][] = [
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['::ffff:c000:201', '192.0.2.1'],
    ['2001:DB8::1', '2001:db8::1'], // lower case (§4.3)
    ['2001:0DB8:0001:0002:ffff::1', '2001:db8:1:2:ffff::1'], // no leading zeros (§4.1)
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // leftmost of equal runs (§4.2.3)
    ['2001:db8:0:1:0:0:0:1', '2001:db8:0:1::1'], // the longest run (§4.2.3)
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a single zero group is not shortened (§4.2.2)
    ['::2:3:4:5:6:7:8', '0:2:3:4:5:6:7:8'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['::1', '::1'],
    ['1::', '1::'],
    ['fe80::', 'fe80::'],
    ['::1.2.3.4', '::102:304'], // IPv4-compatible (not mapped): stays IPv6
    ['64:ff9b::192.0.2.1', '64:ff9b::c000:201'],
    ['fe80::1%eth0', 'fe80::1'],
    ['2001:db8:85a3::8a2e:370:7334', '2001:db8:85a3::8a2e:370:7334'],
  ];
  for (const [input, expected] of cases) {
    test(`${input} -> ${expected}`, () => assert.equal(formatIp(ip(input)), expected));
  }

  test('an IPv4-mapped address left unfolded keeps its dotted quad (§5)', () => {
    assert.equal(formatIp(ip('::ffff:192.0.2.1', { keepMapped: true })), '::ffff:192.0.2.1');
    assert.equal(formatIp(ip('::FFFF:c000:201', { keepMapped: true })), '::ffff:192.0.2.1');
  });

  test('bytes may be a Buffer slice (a PROXY v2 address block)', () => {
    const block = Buffer.from([0xff, 0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 0x01]);
    assert.equal(formatIp({ family: 'ipv6', bytes: block.subarray(1) }), '2001:db8::1');
    assert.equal(formatIp({ family: 'ipv4', bytes: Buffer.from([203, 0, 113, 9]) }), '203.0.113.9');
  });
});

describe('sameIp', () => {
  test('compares addresses, not spellings', () => {
    assert.ok(sameIp('2001:DB8::1', '2001:db8:0:0::1'));
    assert.ok(sameIp('::ffff:127.0.0.1', '127.0.0.1'));
    assert.ok(!sameIp('2001:db8::1', '2001:db8::2'));
    assert.ok(!sameIp('127.0.0.1', '::1'));
  });

  test('takes parsed addresses or text, in any mix', () => {
    const a = ip('192.0.2.1');
    assert.equal(sameIp(a, ip('::ffff:192.0.2.1')), true);
    assert.equal(sameIp(a, '::ffff:192.0.2.1'), true);
    assert.equal(sameIp('192.0.2.1', a), true);
    assert.equal(sameIp(a, ip('192.0.2.2')), false);
    assert.equal(sameIp(a, ip('::192.0.2.1')), false, 'IPv4-compatible is another address');
  });

  test('text that is not an address matches nothing, not even itself', () => {
    assert.equal(sameIp('x', 'x'), false);
    assert.equal(sameIp(ip('192.0.2.1'), 'mx.example.org'), false);
  });
});

describe('IPv4 and unsigned 32-bit numbers', () => {
  test('ipv4ToUint gives the unsigned value answer ranges compare', () => {
    assert.equal(ipv4ToUint('127.0.0.2'), 0x7f000002);
    assert.equal(ipv4ToUint('255.255.255.255'), 0xffffffff);
    assert.equal(ipv4ToUint('0.0.0.0'), 0);
  });

  test('ipv4ToUint refuses what is not a plain dotted quad', () => {
    for (const bad of ['::ffff:127.0.0.2', '2001:db8::1', '1.2.3', '127.0.0.2%eth0', '']) assert.equal(ipv4ToUint(bad), undefined, bad);
  });

  test('uintToIpv4 round-trips ipv4ToUint', () => {
    for (const a of ['0.0.0.0', '127.0.0.2', '192.0.2.255', '255.255.255.255']) assert.equal(uintToIpv4(ipv4ToUint(a) ?? -1), a);
  });

  test('bytesToUint is unsigned above 2^31', () => {
    assert.equal(bytesToUint(ip('192.0.2.1').bytes), 0xc0000201);
    assert.equal(bytesToUint(ip('::ffff:10.0.0.1').bytes), 0x0a000001);
  });
});

describe('parseIp agrees with the bytes, however an address is spelt', () => {
  /** A small seeded generator (mulberry32), so a failure names a reproducible case. */
  function rng(seed: number): () => number {
    let s = seed >>> 0;
    return () => {
      let t = (s = (s + 0x6d2b79f5) >>> 0);
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
  }

  /** One of the spellings RFC 4291 §2.2 allows: zero runs as `::`, leading zeros, upper case, a dotted tail. */
  function spell(bytes: Uint8Array, next: () => number): string {
    const groups = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
    let parts = groups.map((g) => {
      const hex = g.toString(16);
      const padded = next() < 0.3 ? hex.padStart(4, '0') : hex;
      return next() < 0.3 ? padded.toUpperCase() : padded;
    });
    if (next() < 0.3) parts = [...parts.slice(0, 6), Array.from(bytes.subarray(12)).join('.')];
    // Collapse one run of zero groups (never inside the dotted tail).
    const zero = (p: string): boolean => /^0+$/.test(p);
    const starts = parts.map((p, i) => (zero(p) ? i : -1)).filter((i) => i >= 0 && i < 6 + (parts.length === 8 ? 2 : 0));
    if (starts.length > 0 && next() < 0.7) {
      const start = starts[Math.floor(next() * starts.length)] ?? 0;
      let end = start;
      while (end + 1 < parts.length && zero(parts[end + 1] ?? '') && next() < 0.8) end++;
      return `${parts.slice(0, start).join(':')}::${parts.slice(end + 1).join(':')}`;
    }
    return parts.join(':');
  }

  test('2,000 random IPv6 addresses, sparse in zeros, each spelt at random', () => {
    const next = rng(20261123);
    for (let n = 0; n < 2000; n++) {
      const bytes = Uint8Array.from({ length: 16 }, () => (next() < 0.5 ? 0 : Math.floor(next() * 256)));
      if (bytes[10] === 0xff && bytes[11] === 0xff) bytes[11] = 0; // not IPv4-mapped: that folds (tested above)
      const text = spell(bytes, next);
      assert.deepEqual(parseIp(text), { family: 'ipv6', bytes }, text);
      assert.equal(formatIp(ip(text)), formatIp({ family: 'ipv6', bytes }), text);
    }
  });

  test('IPv4: every octet value in every position', () => {
    for (let v = 0; v < 256; v++) {
      for (let at = 0; at < 4; at++) {
        const bytes = Uint8Array.from([1, 2, 3, 4]);
        bytes[at] = v;
        assert.deepEqual(parseIp(bytes.join('.')), { family: 'ipv4', bytes });
        assert.deepEqual(parseIp(`::ffff:${bytes.join('.')}`), { family: 'ipv4', bytes }, 'mapped, dotted');
      }
    }
  });
});
