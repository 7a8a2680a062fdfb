import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { checkHelo } from '../../../src/policy/checks/helo.js';

const WEIGHTS = { notFqdn: 1, literalMismatch: 2, claimsUs: 5, badSyntax: 3 };
const US = { hostname: 'mx.example.net', addresses: ['198.51.100.25', '2001:db8:25::25', '::ffff:198.51.100.26'] };
const CLIENT4 = '192.0.2.10';
const CLIENT6 = '2001:db8:1::10';

type Kind = keyof typeof WEIGHTS;

function kinds(helo: string, client = CLIENT4, us = US): Kind[] {
  return checkHelo(helo, client, us, WEIGHTS).map((e) => e.check.replace(/^helo\./, '') as Kind);
}

describe('checkHelo', () => {
  const cases: [helo: string, client: string, expected: Kind[]][] = [
    // Real MTAs.
    ['mail.example.org', CLIENT4, []],
    ['MAIL.Example.ORG', CLIENT4, []],
    ['mail.example.org.', CLIENT4, []], // absolute name
    ['a.b', CLIENT4, []],
    ['3com.com', CLIENT4, []], // labels may start with a digit
    ['mx-1.sub-domain.example.co.uk', CLIENT4, []],
    ['xn--bcher-kva.example', CLIENT4, []], // IDN as punycode
    ['mail.xn--80akhbyknj4f', CLIENT4, []], // punycode TLD
    ['  mail.example.org  ', CLIENT4, []], // surrounding blanks are the parser's slack
    [`${'a'.repeat(63)}.example.org`, CLIENT4, []],
    [`${'a.'.repeat(126)}ab`, CLIENT4, []], // 254 characters
    // Address literals.
    ['[192.0.2.10]', CLIENT4, []],
    ['[192.0.2.10]', '::ffff:192.0.2.10', []],
    ['[192.000.002.010]', CLIENT4, []], // Snum allows leading zeros
    ['[IPv6:2001:db8:1::10]', CLIENT6, []],
    ['[ipv6:2001:DB8:1:0:0:0:0:10]', CLIENT6, []],
    ['[IPv6:::ffff:192.0.2.10]', CLIENT4, []], // mapped literal, IPv4 client
    ['[IPv6:::ffff:192.0.2.10]', '::ffff:192.0.2.10', []],
    ['[192.0.2.11]', CLIENT4, ['literalMismatch']],
    ['[192.0.2.10]', CLIENT6, ['literalMismatch']],
    ['[IPv6:2001:db8:1::11]', CLIENT6, ['literalMismatch']],
    ['[IPv6:2001:db8:1::10]', CLIENT4, ['literalMismatch']],
    ['[198.51.100.25]', CLIENT4, ['literalMismatch', 'claimsUs']],
    ['[198.51.100.26]', CLIENT4, ['literalMismatch', 'claimsUs']], // ours, listed as mapped
    ['[IPv6:2001:db8:25::25]', CLIENT6, ['literalMismatch', 'claimsUs']],
    // Broken literals.
    ['[192.0.2.256]', CLIENT4, ['badSyntax']],
    ['[192.0.2]', CLIENT4, ['badSyntax']],
    ['[2001:db8::1]', CLIENT6, ['badSyntax']], // IPv6 needs its tag
    ['[IPv6:192.0.2.10]', CLIENT4, ['badSyntax']],
    ['[IPv6:fe80::1%eth0]', 'fe80::1', ['badSyntax']],
    ['[IPv6:2001:db8::1::2]', CLIENT6, ['badSyntax']],
    ['[foo:bar]', CLIENT4, ['badSyntax']],
    ['[192.0.2.10', CLIENT4, ['badSyntax']],
    ['[]', CLIENT4, ['badSyntax']],
    ['[mail.example.org]', CLIENT4, ['badSyntax']],
    // Bare addresses.
    ['192.0.2.10', CLIENT4, ['badSyntax']],
    ['192.0.2.99', CLIENT4, ['badSyntax']],
    ['2001:db8:1::10', CLIENT6, ['badSyntax']],
    ['198.51.100.25', CLIENT4, ['badSyntax', 'claimsUs']],
    ['2001:db8:25::25', CLIENT6, ['badSyntax', 'claimsUs']],
    // Not a hostname.
    ['', CLIENT4, ['badSyntax']],
    ['.', CLIENT4, ['badSyntax']],
    ['mail..example.org', CLIENT4, ['badSyntax']],
    ['.example.org', CLIENT4, ['badSyntax']],
    ['mail.example.org..', CLIENT4, ['badSyntax']],
    ['my_host.example.org', CLIENT4, ['badSyntax']],
    ['-mail.example.org', CLIENT4, ['badSyntax']],
    ['mail-.example.org', CLIENT4, ['badSyntax']],
    ['mail example.org', CLIENT4, ['badSyntax']],
    ['mail.example.org\u0000', CLIENT4, ['badSyntax']],
    ['bücher.example', CLIENT4, ['badSyntax']], // IDN must be punycode
    ['mail.example.123', CLIENT4, ['badSyntax']], // numeric TLD
    ['1.2.3', CLIENT4, ['badSyntax']],
    ['999.1.1.1', CLIENT4, ['badSyntax']],
    [`${'a'.repeat(64)}.example.org`, CLIENT4, ['badSyntax']],
    [`${'a.'.repeat(127)}ab`, CLIENT4, ['badSyntax']], // 256 characters
    ['mail.example.org/x', CLIENT4, ['badSyntax']],
    // Not fully qualified.
    ['localhost', CLIENT4, ['notFqdn']],
    ['LOCALHOST', CLIENT4, ['notFqdn']],
    ['localhost.', CLIENT4, ['notFqdn']],
    ['mypc', CLIENT4, ['notFqdn']],
    ['localhost.localdomain', CLIENT4, ['notFqdn']],
    ['box.local', CLIENT4, ['notFqdn']],
    ['host.invalid', CLIENT4, ['notFqdn']],
    // Claims to be us.
    ['mx.example.net', CLIENT4, ['claimsUs']],
    ['MX.EXAMPLE.NET.', CLIENT4, ['claimsUs']],
    ['mx2.example.net', CLIENT4, []],
    // A client on one of our own addresses is us: no claim held against it.
    ['mx.example.net', '198.51.100.25', []],
    ['[198.51.100.25]', '198.51.100.25', []],
    ['[198.51.100.26]', '::ffff:198.51.100.26', []],
    ['198.51.100.25', '198.51.100.25', ['badSyntax']],
  ];
  for (const [helo, client, expected] of cases) {
    test(`${JSON.stringify(helo.length > 40 ? `${helo.slice(0, 40)}…(${helo.length})` : helo)} from ${client} -> ${expected.join(', ') || 'clean'}`, () => {
      assert.deepEqual(kinds(helo, client).sort(), [...expected].sort());
    });
  }

  test('evidence carries the weight, the helo class and a reason naming the name', () => {
    const [evidence, ...rest] = checkHelo('localhost', CLIENT4, US, WEIGHTS);
    assert.equal(rest.length, 0);
    assert.deepEqual(evidence, {
      check: 'helo.notFqdn',
      weight: 1,
      class: 'helo',
      reason: 'HELO "localhost" is not a fully qualified domain name',
    });
    const mismatch = checkHelo('[192.0.2.11]', '::ffff:192.0.2.10', US, WEIGHTS);
    assert.equal(mismatch[0]?.reason, `HELO "[192.0.2.11]" is not the client's address 192.0.2.10`);
    assert.match(checkHelo('my_host.example.org', CLIENT4, US, WEIGHTS)[0]?.reason ?? '', /underscore/);
  });

  test('a check with weight 0 gives nothing; the others still do', () => {
    const weights = { ...WEIGHTS, literalMismatch: 0 };
    assert.deepEqual(
      checkHelo('[198.51.100.25]', CLIENT4, US, weights).map((e) => e.check),
      ['helo.claimsUs'],
    );
    assert.deepEqual(checkHelo('localhost', CLIENT4, US, { ...WEIGHTS, notFqdn: 0 }), []);
  });

  test('client text in reasons is escaped and cut', () => {
    const helo = `evil\u001b[31m${'x'.repeat(500)}`;
    const [evidence] = checkHelo(helo, CLIENT4, US, WEIGHTS);
    assert.ok(evidence);
    assert.ok(!evidence.reason.includes('\u001b'), evidence.reason);
    assert.ok(evidence.reason.length < 200, `${evidence.reason.length} characters`);
  });

  test('a generic name is not a claim to be us, even when we have that name', () => {
    for (const hostname of ['localhost', 'localhost.localdomain', 'mailhost']) {
      assert.deepEqual(kinds(hostname, CLIENT4, { hostname, addresses: [] }), ['notFqdn'], hostname);
    }
  });

  test('an empty hostname for us claims nothing', () => {
    assert.deepEqual(kinds('mail.example.org', CLIENT4, { hostname: '', addresses: [] }), []);
  });
});
