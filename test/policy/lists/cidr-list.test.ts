import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { parseIp } from '../../../src/core/ip.js';
import { CidrListError, compileCidrList, parseCidrListText } from '../../../src/policy/lists/cidr-list.js';

function thrown(fn: () => unknown): CidrListError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CidrListError, `expected CidrListError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a CidrListError');
}

describe('parseCidrListText', () => {
  const text = [
    '# trusted load balancers',
    '',
    '192.0.2.0/24',
    '  198.51.100.7   # a single host, trailing comment',
    '2001:db8::/32',
    '::1',
    '\t',
  ].join('\n');

  test('matches IPv4 and IPv6 CIDRs and single addresses, ignoring comments and blank lines', () => {
    const list = parseCidrListText(text, 'trusted.cidr');
    assert.equal(list.size, 4);
    assert.deepEqual(
      list.entries.map((e) => [e.line, e.value, e.family, e.prefix]),
      [
        [3, '192.0.2.0/24', 'ipv4', 24],
        [4, '198.51.100.7', 'ipv4', 32],
        [5, '2001:db8::/32', 'ipv6', 32],
        [6, '::1', 'ipv6', 128],
      ],
    );
    assert.equal(list.has('192.0.2.1'), true);
    assert.equal(list.has('192.0.2.255'), true);
    assert.equal(list.has('192.0.3.1'), false);
    assert.equal(list.has('198.51.100.7'), true);
    assert.equal(list.has('198.51.100.8'), false);
    assert.equal(list.has('2001:db8:ffff::25'), true);
    assert.equal(list.has('2001:db9::1'), false);
    assert.equal(list.has('::1'), true);
    assert.deepEqual(list.warnings, []);
  });

  test('folds IPv4-mapped IPv6 client addresses to IPv4, dotted and hex forms', () => {
    const list = parseCidrListText(text, 'trusted.cidr');
    assert.equal(list.has('::ffff:192.0.2.9'), true);
    assert.equal(list.has('::FFFF:198.51.100.7'), true);
    assert.equal(list.has('::ffff:c000:209'), true);
    assert.equal(list.has('::ffff:192.0.3.9'), false);
  });

  test('folds an IPv4-mapped entry so it matches plain IPv4 clients', () => {
    const list = parseCidrListText('::ffff:203.0.113.0/120\n', 'mapped.cidr');
    assert.equal(list.entries[0]?.family, 'ipv4');
    assert.equal(list.entries[0]?.prefix, 24);
    assert.equal(list.has('203.0.113.50'), true);
    assert.equal(list.has('::ffff:203.0.113.50'), true);
    assert.equal(list.has('203.0.114.1'), false);
  });

  test('does not match across families or non-addresses', () => {
    const list = parseCidrListText('0.0.0.0/0\n', 'all4');
    assert.equal(list.has('10.1.2.3'), true);
    assert.equal(list.has('2001:db8::1'), false);
    assert.equal(list.has('not-an-ip'), false);
    assert.equal(list.has(''), false);
  });

  test('accepts host bits set, matches the whole network and notes it', () => {
    const list = parseCidrListText('# x\n192.0.2.77/24\n', 'hb.cidr');
    assert.equal(list.entries[0]?.hostBitsSet, true);
    assert.equal(list.has('192.0.2.200'), true);
    assert.equal(list.warnings.length, 1);
    assert.match(list.warnings[0] ?? '', /^hb\.cidr:2: host bits set/);
    assert.equal(parseCidrListText('2001:db8::1/32', 'x').entries[0]?.hostBitsSet, true);
    assert.equal(parseCidrListText('2001:db8::/32', 'x').entries[0]?.hostBitsSet, false);
  });

  test('reports a bad line with its source, line number and reason', () => {
    const err = thrown(() => parseCidrListText('# header\n192.0.2.0/24\n\nmail.example.com\n10.0.0.0/8\n', 'lists/trusted.cidr'));
    assert.equal(err.source, 'lists/trusted.cidr');
    assert.equal(err.line, 4);
    assert.match(err.reason, /not an IP address/);
    assert.equal(err.message, `lists/trusted.cidr:4: ${err.reason}`);
  });

  test('rejects prefixes out of range or not decimal', () => {
    for (const [line, why] of [
      ['10.0.0.0/33', /out of range/],
      ['2001:db8::/129', /out of range/],
      ['10.0.0.0/', /bad prefix/],
      ['10.0.0.0/-1', /bad prefix/],
      ['10.0.0.0/2x', /bad prefix/],
      ['10.0.0.0/24/8', /bad prefix/],
    ] as const) {
      const err = thrown(() => parseCidrListText(`\n${line}`, 'p.cidr'));
      assert.equal(err.line, 2, line);
      assert.match(err.reason, why, line);
    }
  });

  test('rejects a Postfix-style action after the address and zone ids', () => {
    assert.match(thrown(() => parseCidrListText('192.0.2.0/24 OK', 'a')).reason, /one address or CIDR/);
    assert.match(thrown(() => parseCidrListText('fe80::1%eth0', 'a')).reason, /zone id/);
    assert.match(thrown(() => parseCidrListText('300.1.1.1', 'a')).reason, /not an IP/);
  });

  test('handles CRLF files', () => {
    const list = parseCidrListText('192.0.2.0/24\r\n# c\r\n2001:db8::/32\r\n', 'crlf');
    assert.equal(list.size, 2);
    assert.equal(list.entries[1]?.line, 3);
  });
});

describe('compileCidrList', () => {
  test('compiles config entries and keeps their line numbers in errors', () => {
    const list = compileCidrList(
      [
        { value: '10.0.0.0/8', line: 12 },
        { value: ' fd00::/8 ', line: 13 },
      ],
      'smtp-tarpit.yaml',
    );
    assert.equal(list.size, 2);
    assert.equal(list.source, 'smtp-tarpit.yaml');
    assert.equal(list.has('10.200.0.1'), true);
    assert.equal(list.has('fd12::1'), true);

    const err = thrown(() => compileCidrList([{ value: '10.0.0.0/8', line: 12 }, { value: '', line: 14 }], 'smtp-tarpit.yaml'));
    assert.equal(err.message, 'smtp-tarpit.yaml:14: empty entry');
  });

  test('an address the caller parsed gives the entry its text gives, the lowest line first', () => {
    const list = parseCidrListText(['2001:db8:0:8::/61', '2001:db8::/32', '2001:db8::fe/127', '10.1.2.0/23', '10.0.0.0/8', '10.1.3.4', '::ffff:10.9.0.0/112'].join('\n'), 'p.cidr');
    const cases: [string, number | undefined][] = [
      ['2001:db8:0:f::1', 1],
      ['2001:db8:0:10::1', 2],
      ['2001:db8::ff', 2],
      ['2001:db9::1', undefined],
      ['10.1.3.4', 4],
      ['::ffff:10.1.3.4', 4],
      ['10.200.0.1', 5],
      ['11.0.0.1', undefined],
    ];
    for (const [address, line] of cases) {
      const parsed = parseIp(address);
      assert.ok(parsed, address);
      assert.equal(list.match(address)?.line, line, `${address} as text`);
      assert.equal(list.match(parsed)?.line, line, `${address} parsed`);
      assert.equal(list.has(parsed), line !== undefined, `${address} parsed, has()`);
    }
  });

  test('returns a frozen list', () => {
    const list = compileCidrList([{ value: '10.0.0.0/8', line: 1 }], 'x');
    assert.equal(Object.isFrozen(list), true);
    assert.equal(Object.isFrozen(list.entries), true);
  });
});
