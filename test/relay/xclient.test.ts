import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addressLiteral, buildXclientCommand, heloArgument, xclientAddress, xtextEncode } from '../../src/relay/xclient.js';

const ALL = ['NAME', 'ADDR', 'PORT', 'PROTO', 'HELO', 'LOGIN'];

test('an IPv4 client is sent as ADDR=1.2.3.4 with every advertised attribute', () => {
  const line = buildXclientCommand({ address: '192.0.2.7', port: 40123, name: 'mx.example.org', proto: 'ESMTP' }, ALL);
  assert.equal(line, 'XCLIENT ADDR=192.0.2.7 NAME=mx.example.org PORT=40123 PROTO=ESMTP');
});

test('an IPv6 client is sent in the IPV6: form Postfix requires', () => {
  assert.equal(xclientAddress('2001:db8::1'), 'IPV6:2001:db8::1');
  const line = buildXclientCommand({ address: '2001:db8::1', port: 25, proto: 'SMTP' }, ALL);
  assert.equal(line, 'XCLIENT ADDR=IPV6:2001:db8::1 NAME=[UNAVAILABLE] PORT=25 PROTO=SMTP');
});

test('an IPv4-mapped IPv6 client is sent as plain IPv4', () => {
  assert.equal(xclientAddress('::ffff:198.51.100.4'), '198.51.100.4');
  assert.equal(xclientAddress('::FFFF:198.51.100.4'), '198.51.100.4');
  assert.equal(addressLiteral('::ffff:198.51.100.4'), '[198.51.100.4]');
});

test('only attributes the backend lists are sent', () => {
  const line = buildXclientCommand({ address: '192.0.2.7', port: 1, name: 'x.example', proto: 'ESMTP' }, ['ADDR', 'PROTO']);
  assert.equal(line, 'XCLIENT ADDR=192.0.2.7 PROTO=ESMTP');
});

test('values are xtext-encoded (RFC 3461 §4)', () => {
  assert.equal(xtextEncode('a+b=c d'), 'a+2Bb+3Dc+20d');
  assert.equal(xtextEncode('\x00\x7f'), '+00+7F');
  assert.equal(xtextEncode('é'), '+C3+A9');
  assert.equal(xtextEncode('[UNAVAILABLE]'), '[UNAVAILABLE]');
  const line = buildXclientCommand({ address: '192.0.2.7', port: 1, name: 'we ird+=', proto: 'ESMTP' }, ['ADDR', 'NAME']);
  assert.equal(line, 'XCLIENT ADDR=192.0.2.7 NAME=we+20ird+2B+3D');
});

test("the EHLO after XCLIENT uses the client's HELO, else its address literal", () => {
  assert.equal(heloArgument({ address: '192.0.2.7', port: 1, helo: 'mail.example.org', proto: 'ESMTP' }), 'mail.example.org');
  assert.equal(heloArgument({ address: '192.0.2.7', port: 1, proto: 'ESMTP' }), '[192.0.2.7]');
  assert.equal(heloArgument({ address: '2001:db8::1', port: 1, helo: '  ', proto: 'ESMTP' }), '[IPv6:2001:db8::1]');
});

test('a non-address is refused rather than sent', () => {
  assert.throws(() => xclientAddress('localhost'), TypeError);
});
