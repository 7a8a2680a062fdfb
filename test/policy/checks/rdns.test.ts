/**
 * FCrDNS against a real dnsmasq (test/helpers/dns-server.ts): confirmed,
 * unconfirmed, missing, and our resolver failing (no evidence, `[TEMPUNAVAIL]`),
 * plus the XCLIENT NAME resolver that now rides on the same lookups.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseIp } from '../../../src/core/ip.js';
import { checkRdns } from '../../../src/policy/checks/rdns.js';
import { DnsClient } from '../../../src/policy/dns/dns-client.js';
import { NAME_TEMPUNAVAIL, NAME_UNAVAILABLE } from '../../../src/policy/dns/fcrdns.js';
import { sharedDnsServer, TEST_DNS } from '../../helpers/dns-server.js';
import { requireTool, type TestContext } from '../../helpers/require-tool.js';

const server = sharedDnsServer();
const { rdns } = TEST_DNS;
const WEIGHTS = { missing: 2, unconfirmed: 1 };

// dnsmasq answers: a generous default, so a loaded machine never turns an answer into a timeout.
async function client(t: TestContext, timeout = 5): Promise<DnsClient | undefined> {
  if (!requireTool(t, 'dnsmasq')) return undefined;
  return new DnsClient({ servers: [(await server.get()).address], timeout });
}

test('a PTR whose A record leads back to the client is confirmed: no evidence, the name without its dot', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  for (const address of [rdns.confirmed.address, `::ffff:${rdns.confirmed.address}`, rdns.confirmed.ipv6]) {
    assert.deepEqual(await checkRdns(address, WEIGHTS, dns), { evidence: [], name: rdns.confirmed.name, status: 'confirmed', ptr: [rdns.confirmed.name] }, address);
  }
});

test('a PTR whose A record is another address is unconfirmed', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkRdns(rdns.unconfirmed.address, WEIGHTS, dns);
  assert.equal(result.name, NAME_UNAVAILABLE);
  assert.equal(result.status, 'unconfirmed');
  assert.deepEqual(result.evidence, [
    { check: 'rdns', weight: 1, reason: `reverse DNS ${rdns.unconfirmed.name} does not resolve back to ${rdns.unconfirmed.address}`, class: 'rdns' },
  ]);
});

test('no PTR at all weighs `missing`', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkRdns(rdns.missing, WEIGHTS, dns);
  assert.equal(result.name, NAME_UNAVAILABLE);
  assert.equal(result.status, 'missing');
  assert.deepEqual(result.evidence, [{ check: 'rdns', weight: 2, reason: `no reverse DNS (PTR) for ${rdns.missing}`, class: 'rdns' }]);
});

test('with several PTR names, one that confirms is enough', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const result = await checkRdns(rdns.several.address, WEIGHTS, dns);
  assert.equal(result.name, rdns.several.name);
  assert.deepEqual(result.evidence, []);
  assert.deepEqual([...result.ptr].sort(), ['liar.test', rdns.several.name].sort());
});

test('a PTR lookup that times out is our fault: [TEMPUNAVAIL], no evidence, within the timeout', async (t) => {
  const dns = await client(t, 0.3);
  if (!dns) return;
  const started = performance.now();
  const result = await checkRdns(rdns.ptrTimesOut, WEIGHTS, dns);
  const elapsed = performance.now() - started;
  assert.deepEqual(result, { evidence: [], name: NAME_TEMPUNAVAIL, status: 'tempfail', ptr: [] });
  // The upper bound leaves a loaded machine 2 s of late timers; it only catches a wait for something else.
  assert.ok(elapsed >= 280 && elapsed < 2300, `took ${elapsed.toFixed(0)} ms for a 300 ms timeout`);
});

test('a forward lookup that times out is our fault too', async (t) => {
  const dns = await client(t, 0.3);
  if (!dns) return;
  const result = await checkRdns(rdns.forwardTimesOut.address, WEIGHTS, dns);
  assert.deepEqual(result, { evidence: [], name: NAME_TEMPUNAVAIL, status: 'tempfail', ptr: [rdns.forwardTimesOut.name] });
});

test('an unreachable resolver gives [TEMPUNAVAIL], never evidence against the client', async () => {
  // Port 9 (discard) on loopback: nothing listens, the query is refused by the kernel or times out.
  const dns = new DnsClient({ servers: ['127.0.0.1:9'], timeout: 0.3 });
  const result = await checkRdns(rdns.missing, WEIGHTS, dns);
  assert.deepEqual(result.evidence, []);
  assert.equal(result.name, NAME_TEMPUNAVAIL);
});

test('with the PTR and forward answers cached the check answers synchronously, the same as from the resolver', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const addresses = [rdns.confirmed.address, `::ffff:${rdns.confirmed.address}`, rdns.confirmed.ipv6, rdns.unconfirmed.address, rdns.missing, rdns.several.address];
  for (const address of addresses) {
    const cold = checkRdns(address, WEIGHTS, dns);
    const expected = await cold;
    const warm = checkRdns(address, WEIGHTS, dns);
    assert.ok(!(warm instanceof Promise), `${address}: every answer cached`);
    assert.deepEqual(warm, expected, address);
  }
  const fresh = await client(t);
  if (!fresh) return;
  const pending = checkRdns(rdns.confirmed.address, WEIGHTS, fresh);
  assert.ok(pending instanceof Promise, 'nothing cached: it waits');
  assert.equal((await pending).status, 'confirmed');
});

test('an address the caller parsed already is used as parsed; the evidence names the address as given', async (t) => {
  const dns = await client(t);
  if (!dns) return;
  const given = `::ffff:${rdns.missing}`;
  const result = await checkRdns(given, WEIGHTS, dns, parseIp(given));
  assert.deepEqual(result.evidence, [{ check: 'rdns', weight: 2, reason: `no reverse DNS (PTR) for ${given}`, class: 'rdns' }]);
});
