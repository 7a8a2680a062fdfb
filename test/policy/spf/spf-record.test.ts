/**
 * The SPF record parser (RFC 7208 §4.5, §4.6, §5, §6, §12): which TXT strings
 * are SPF records, each term's qualifier, target and prefix lengths, and a
 * typed error naming each term that does not parse while the others are kept.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { networkText } from '../../../src/policy/spf/network.js';
import { domainNameError, isSpfRecord, parseSpfRecord, type SpfTerm } from '../../../src/policy/spf/spf-record.js';

/** The one term `text` parses to; fails on an error. */
function term(text: string): SpfTerm {
  const record = parseSpfRecord(`v=spf1 ${text}`);
  assert.deepEqual(record.errors, [], text);
  assert.equal(record.terms.length, 1, text);
  return record.terms[0]!;
}

/** The error code `text` gives, and the term it names. */
function error(text: string): { code: string; term: string } {
  const record = parseSpfRecord(`v=spf1 ${text}`);
  assert.equal(record.errors.length, 1, `${text}: ${JSON.stringify(record)}`);
  const e = record.errors[0]!;
  return { code: e.code, term: e.term };
}

test('a TXT string is an SPF record only when it starts with v=spf1 and a space or nothing', () => {
  assert.equal(isSpfRecord('v=spf1 -all'), true);
  assert.equal(isSpfRecord('v=spf1'), true);
  assert.equal(isSpfRecord('V=SPF1 ip4:192.0.2.1'), true, 'ABNF literals are case-insensitive');
  assert.equal(isSpfRecord('v=spf10 -all'), false);
  assert.equal(isSpfRecord(' v=spf1 -all'), false);
  assert.equal(isSpfRecord('spf2.0/pra include:x.example'), false);
  assert.equal(isSpfRecord('google-site-verification=abc'), false);
});

test('terms are split on runs of spaces, in record order, and an empty record has none', () => {
  assert.deepEqual(parseSpfRecord('v=spf1').terms, []);
  assert.deepEqual(
    parseSpfRecord('v=spf1  ip4:192.0.2.1   include:_spf.example.com -all ').terms.map((t) => t.text),
    ['ip4:192.0.2.1', 'include:_spf.example.com', '-all'],
  );
});

test('a qualifier is read from the front of a mechanism; none means pass', () => {
  const quals = parseSpfRecord('v=spf1 all +all -all ~all ?all').terms.map((t) => ('qualifier' in t ? t.qualifier : undefined));
  assert.deepEqual(quals, ['+', '+', '-', '~', '?']);
});

test('ip4 and ip6 give their network with host bits cleared and a missing prefix meaning one address', () => {
  const network = (text: string) => {
    const t = term(text);
    assert.ok(t.kind === 'ip4' || t.kind === 'ip6');
    return networkText(t.network);
  };
  assert.equal(network('ip4:192.0.2.0/24'), '192.0.2.0/24');
  assert.equal(network('ip4:192.0.2.77/24'), '192.0.2.0/24', 'RFC 7208 §5.6 compares the network');
  assert.equal(network('ip4:192.0.2.77'), '192.0.2.77');
  assert.equal(network('ip4:192.0.2.77/32'), '192.0.2.77');
  assert.equal(network('ip4:0.0.0.0/0'), '0.0.0.0/0');
  assert.equal(network('ip6:2001:DB8:0:0::/32'), '2001:db8::/32', 'IPv6 in RFC 5952 form');
  assert.equal(network('ip6:2001:db8::1'), '2001:db8::1');
  assert.equal(network('ip6:2001:db8:ffff::1/33'), '2001:db8:8000::/33');
  assert.equal(network('ip6:::ffff:192.0.2.0/120'), '192.0.2.0/24', 'mapped IPv4 is written as the list loader folds it');
  assert.equal(network('IP4:192.0.2.1'), '192.0.2.1', 'mechanism names are case-insensitive');
});

test('a and mx take an optional domain and dual CIDR lengths, defaulting to 32 and 128', () => {
  const host = (text: string) => {
    const t = term(text);
    assert.ok(t.kind === 'a' || t.kind === 'mx');
    return { kind: t.kind, domain: t.domain?.text, cidr4: t.cidr4, cidr6: t.cidr6 };
  };
  assert.deepEqual(host('a'), { kind: 'a', domain: undefined, cidr4: 32, cidr6: 128 });
  assert.deepEqual(host('mx'), { kind: 'mx', domain: undefined, cidr4: 32, cidr6: 128 });
  assert.deepEqual(host('a/24'), { kind: 'a', domain: undefined, cidr4: 24, cidr6: 128 });
  assert.deepEqual(host('mx//64'), { kind: 'mx', domain: undefined, cidr4: 32, cidr6: 64 });
  assert.deepEqual(host('mx/24//64'), { kind: 'mx', domain: undefined, cidr4: 24, cidr6: 64 });
  assert.deepEqual(host('a:mail.example.com'), { kind: 'a', domain: 'mail.example.com', cidr4: 32, cidr6: 128 });
  assert.deepEqual(host('a:mail.example.com/28//56'), { kind: 'a', domain: 'mail.example.com', cidr4: 28, cidr6: 56 });
  assert.deepEqual(host('mx:example.com.//48'), { kind: 'mx', domain: 'example.com.', cidr4: 32, cidr6: 48 });
  assert.deepEqual(host('a/0//0'), { kind: 'a', domain: undefined, cidr4: 0, cidr6: 0 });
});

test('include, exists, ptr, redirect and exp keep their target, and mark a target with a macro', () => {
  const include = term('include:_spf.Example.com.');
  assert.deepEqual(include, { kind: 'include', text: 'include:_spf.Example.com.', qualifier: '+', domain: { text: '_spf.Example.com.', macro: false } });
  const exists = term('exists:%{i}._spf.example.com');
  assert.equal(exists.kind, 'exists');
  assert.deepEqual(exists.kind === 'exists' && exists.domain, { text: '%{i}._spf.example.com', macro: true });
  assert.deepEqual(term('ptr'), { kind: 'ptr', text: 'ptr', qualifier: '+', domain: undefined });
  assert.deepEqual(term('?ptr:example.com'), { kind: 'ptr', text: '?ptr:example.com', qualifier: '?', domain: { text: 'example.com', macro: false } });
  assert.deepEqual(term('redirect=_spf.example.com'), { kind: 'redirect', text: 'redirect=_spf.example.com', domain: { text: '_spf.example.com', macro: false } });
  assert.deepEqual(term('REDIRECT=%{d}.spf.example.com'), { kind: 'redirect', text: 'REDIRECT=%{d}.spf.example.com', domain: { text: '%{d}.spf.example.com', macro: true } });
  assert.deepEqual(term('exp=explain._spf.%{d}'), { kind: 'exp', text: 'exp=explain._spf.%{d}', domain: { text: 'explain._spf.%{d}', macro: true } });
  assert.deepEqual(term('include:%{ir}.%{v}._spf.%{d2}'), { kind: 'include', text: 'include:%{ir}.%{v}._spf.%{d2}', qualifier: '+', domain: { text: '%{ir}.%{v}._spf.%{d2}', macro: true } });
});

test('an unknown modifier is kept as a modifier to ignore (RFC 7208 §6), not an error', () => {
  assert.deepEqual(term('v2=whatever'), { kind: 'modifier', text: 'v2=whatever', name: 'v2' });
  assert.deepEqual(term('x-tag.1=%{d}'), { kind: 'modifier', text: 'x-tag.1=%{d}', name: 'x-tag.1' });
});

test('a bad prefix length or a bad address is a bad-cidr error naming the term', () => {
  for (const bad of ['ip4:192.0.2.0/33', 'ip4:192.0.2.0/', 'ip4:192.0.2.0/024', 'ip4:192.0.2.0/x', 'ip4:192.0.2.256', 'ip4:192.0.2', 'ip4:01.2.3.4', 'ip4:2001:db8::1', 'ip6:2001:db8::/129', 'ip6:192.0.2.1', 'ip6:fe80::1%eth0', 'a/33', 'mx//129', 'a:example.com/24//200']) {
    assert.deepEqual(error(bad), { code: 'bad-cidr', term: bad }, bad);
  }
});

test('unknown mechanisms, missing or malformed targets and bad macros are syntax errors naming the term', () => {
  for (const bad of [
    'foo:bar.example',
    'include',
    'include:',
    'include:localhost',
    'include:example.123',
    'include:exa..mple.com',
    'exists',
    'all:example.com',
    'ip4',
    'ip4192.0.2.1',
    'a:',
    'mxfoo',
    '+redirect=example.com',
    'redirect=',
    'include:%{x}.example.com',
    'include:50%.example.com',
    'include:%{d.example.com',
    '-',
    `include:${'a'.repeat(64)}.example.com`,
  ]) {
    assert.deepEqual(error(bad), { code: 'syntax', term: bad }, bad);
  }
});

test('a bad term is reported and the good terms around it are still returned', () => {
  const record = parseSpfRecord('v=spf1 ip4:192.0.2.1 foo:bar.example ip4:192.0.2.0/33 include:_spf.example.com -all');
  assert.deepEqual(record.terms.map((t) => t.text), ['ip4:192.0.2.1', 'include:_spf.example.com', '-all']);
  assert.deepEqual(
    record.errors.map((e) => [e.code, e.term]),
    [
      ['syntax', 'foo:bar.example'],
      ['bad-cidr', 'ip4:192.0.2.0/33'],
    ],
  );
  assert.ok(record.errors.every((e) => e.reason.length > 0));
});

test('a second redirect or exp is a duplicate-modifier error and the first one is kept', () => {
  const record = parseSpfRecord('v=spf1 redirect=a.example.com exp=x.example.com redirect=b.example.com exp=y.example.com');
  assert.deepEqual(record.terms.map((t) => t.text), ['redirect=a.example.com', 'exp=x.example.com']);
  assert.deepEqual(
    record.errors.map((e) => [e.code, e.term]),
    [
      ['duplicate-modifier', 'redirect=b.example.com'],
      ['duplicate-modifier', 'exp=y.example.com'],
    ],
  );
});

test('a tab is not a term separator (RFC 7208 §4.6.1: SP only)', () => {
  assert.deepEqual(error('ip4:192.0.2.1\tip4:192.0.2.2'), { code: 'bad-cidr', term: 'ip4:192.0.2.1\tip4:192.0.2.2' });
});

test('domain names given on the command line are checked by the same rules as targets', () => {
  assert.equal(domainNameError('example.com'), undefined);
  assert.equal(domainNameError('_spf.Example.com.'), undefined);
  assert.equal(domainNameError('xn--bcher-kva.example'), undefined);
  for (const bad of ['', '.', 'localhost', 'example..com', 'example.123', 'exa mple.com', 'ex%41.com', `${'a'.repeat(64)}.com`, `${'a.'.repeat(127)}com`, '-x.example.c-']) {
    assert.notEqual(domainNameError(bad), undefined, bad);
  }
});
