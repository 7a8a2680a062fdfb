import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  bareLfEvidence,
  classifyCommandLine,
  nonSmtpEvidence,
  pipeliningEvidence,
  pregreetEvidence,
} from '../../../src/policy/checks/protocol.js';

const POLICY = { pregreet: 8, protocol: { pipelining: 5, bareLf: 2, nonSmtp: 15 } };
const ZERO = { pregreet: 0, protocol: { pipelining: 0, bareLf: 0, nonSmtp: 0 } };

describe('classifyCommandLine', () => {
  const cases: [line: string, expected: 'smtp' | 'non-smtp'][] = [
    ['EHLO mail.example.org', 'smtp'],
    ['ehlo mail.example.org\r\n', 'smtp'],
    ['HELO x', 'smtp'],
    ['LHLO x', 'smtp'],
    ['MAIL FROM:<a@example.org>', 'smtp'],
    ['RCPT TO:<b@example.org>', 'smtp'],
    ['DATA', 'smtp'],
    ['BDAT 100 LAST', 'smtp'],
    ['RSET', 'smtp'],
    ['NOOP', 'smtp'],
    ['QUIT\n', 'smtp'],
    ['VRFY postmaster', 'smtp'],
    ['EXPN staff', 'smtp'],
    ['HELP', 'smtp'],
    ['STARTTLS', 'smtp'],
    ['AUTH PLAIN AGFAAGI=', 'smtp'],
    ['ETRN example.org', 'smtp'],
    ['XCLIENT ADDR=192.0.2.1', 'smtp'],
    ['', 'smtp'], // an empty line gets the server's own 500
    ['\r\n', 'smtp'],
    ['FOO bar', 'smtp'], // unknown but not clearly another protocol
    ['MAIL', 'smtp'],
    ['\tNOOP', 'smtp'],
    // HTTP.
    ['GET / HTTP/1.1', 'non-smtp'],
    ['get /index.html HTTP/1.0\r\n', 'non-smtp'],
    ['POST /cgi-bin/x HTTP/1.1', 'non-smtp'],
    ['HEAD / HTTP/1.1', 'non-smtp'],
    ['PUT /x HTTP/1.1', 'non-smtp'],
    ['DELETE /x HTTP/1.1', 'non-smtp'],
    ['CONNECT mail.example.org:25 HTTP/1.1', 'non-smtp'],
    ['OPTIONS * HTTP/1.1', 'non-smtp'],
    ['TRACE / HTTP/1.1', 'non-smtp'],
    ['PATCH /x HTTP/1.1', 'non-smtp'],
    ['PRI * HTTP/2.0', 'non-smtp'],
    ['GET /', 'non-smtp'],
    ['FROB /x HTTP/1.1', 'non-smtp'], // any request line
    // Other protocols.
    ['USER root', 'non-smtp'],
    ['PASS hunter2', 'non-smtp'],
    ['CAPA', 'non-smtp'],
    ['a001 CAPABILITY', 'non-smtp'],
    ['A1 LOGIN user pass', 'non-smtp'],
    ['SSH-2.0-OpenSSH_9.6', 'non-smtp'],
    ['\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03', 'non-smtp'], // TLS ClientHello
    ['\x03\x00\x00\x13\x0e\xe0', 'non-smtp'], // RDP
    ['\x00\x00', 'non-smtp'],
    ['\u00ff\u00fb\u0018', 'non-smtp'], // telnet IAC negotiation
  ];
  for (const [line, expected] of cases) {
    test(`${JSON.stringify(line)} -> ${expected}`, () => assert.equal(classifyCommandLine(line), expected));
  }
});

describe('protocol evidence', () => {
  test('pregreet before the banner and before a held reply', () => {
    assert.deepEqual(pregreetEvidence('connect', 17, POLICY), {
      check: 'pregreet',
      weight: 8,
      class: 'pregreet',
      reason: 'sent 17 bytes before the banner',
    });
    assert.equal(pregreetEvidence('rcpt', 6, POLICY)?.reason, 'sent 6 bytes before our reply at rcpt');
  });

  test('pipelining names only the verb (arguments carry addresses)', () => {
    const evidence = pipeliningEvidence('RCPT TO:<victim@example.org>\r\n', POLICY);
    assert.deepEqual(evidence, {
      check: 'protocol.pipelining',
      weight: 5,
      class: 'protocol',
      reason: 'sent "RCPT" before our reply without PIPELINING',
    });
  });

  test('bare LF', () => {
    assert.deepEqual(bareLfEvidence(POLICY), { check: 'protocol.bareLf', weight: 2, class: 'protocol', reason: 'command line ended in a bare LF' });
  });

  test('non-SMTP shows the line, escaped and cut', () => {
    assert.equal(nonSmtpEvidence('GET / HTTP/1.1\r\n', POLICY)?.reason, 'sent non-SMTP "GET / HTTP/1.1"');
    const binary = nonSmtpEvidence(`\x16\x03\x01${'A'.repeat(300)}`, POLICY);
    assert.equal(binary?.weight, 15);
    assert.equal(binary?.check, 'protocol.nonSmtp');
    assert.ok(binary && !binary.reason.includes('\x16') && binary.reason.includes('\\u0016'), binary?.reason);
    assert.ok(binary && binary.reason.length < 80, binary?.reason);
  });

  test('weight 0 gives no evidence', () => {
    assert.equal(pregreetEvidence('connect', 1, ZERO), undefined);
    assert.equal(pipeliningEvidence('MAIL FROM:<>', ZERO), undefined);
    assert.equal(bareLfEvidence(ZERO), undefined);
    assert.equal(nonSmtpEvidence('GET /', ZERO), undefined);
  });
});
