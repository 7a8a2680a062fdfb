/**
 * What the backend hears of a client's envelope (src/smtp/envelope.ts, issue 12
 * item 4): the client's own address bytes and only the MAIL parameters it
 * declared. The last test guards the smtp-server internal this leans on
 * (`_parseAddressCommand` on the connection, docs/platform-notes.md): if it changes,
 * it fails here rather than as bounced IDN mail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { addressInCommand, mailParams, wireAddress } from '../../src/smtp/envelope.js';
import { handOver } from '../../src/smtp/hand-over.js';
import { SmtpClient } from '../helpers/smtp-client.js';

test('mailParams: nothing the client did not declare; SIZE, BODY and SMTPUTF8 when it did', () => {
  assert.deepEqual(mailParams({ args: false }), {});
  assert.deepEqual(mailParams({ args: {} }), {});
  assert.deepEqual(mailParams({ args: { SIZE: '1234' } }), { size: 1234 });
  assert.deepEqual(mailParams({ args: { BODY: '8BITMIME' } }), { body: '8BITMIME' });
  assert.deepEqual(mailParams({ args: { BODY: '8bitmime' } }), { body: '8BITMIME' });
  assert.deepEqual(mailParams({ args: { BODY: '7bit' } }), { body: '7BIT' });
  assert.deepEqual(mailParams({ args: { SMTPUTF8: true } }), { smtputf8: true });
  assert.deepEqual(mailParams({ args: { SIZE: '10', BODY: '7BIT', SMTPUTF8: true } }), { size: 10, body: '7BIT', smtputf8: true });
});

test('addressInCommand: the bytes inside <…>, split as smtp-server splits the line, the source route dropped as it drops it', () => {
  assert.equal(addressInCommand('MAIL FROM:<s@XN--Bcher-kva.example> BODY=7BIT'), 's@XN--Bcher-kva.example');
  assert.equal(addressInCommand('RCPT TO: <Alice@xn--bcher-kva.test>'), 'Alice@xn--bcher-kva.test');
  assert.equal(addressInCommand(Buffer.from('MAIL FROM:<s@bücher.example> SMTPUTF8', 'utf8')), 's@bücher.example');
  assert.equal(addressInCommand('RCPT TO:<@relay.example,@two.example:b@xn--bcher-kva.test>'), 'b@xn--bcher-kva.test');
  assert.equal(addressInCommand('MAIL FROM:<>'), '');
  assert.equal(addressInCommand('RCPT TO:<u@[IPv6:2001:DB8::0001]>'), 'u@[IPv6:2001:DB8::0001]');
  assert.equal(addressInCommand('MAIL FROM:s@example.org'), undefined);
  assert.equal(addressInCommand('MAIL'), undefined);
});

test('smtp-server internal: a handed-over connection hands our hooks the client\'s own address bytes (smtp-server turns A-labels into Unicode)', async (t) => {
  const seen: Array<{ wire: string; library: string }> = [];
  const record = (address: SMTPServerAddress, cb: (err?: Error | null) => void): void => {
    seen.push({ wire: wireAddress(address), library: address.address });
    cb();
  };
  const smtp = new SMTPServer({
    name: 'e.test',
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    logger: false,
    onMailFrom: (address, _session, cb) => record(address, cb),
    onRcptTo: (address, _session, cb) => record(address, cb),
  });
  const front = createServer({ pauseOnConnect: true }, (socket: Socket) => {
    handOver(smtp, socket, { id: 'e1', remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 });
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => front.close(() => r())));
  const client = await SmtpClient.open({ port: (front.address() as AddressInfo).port });
  t.after(() => client.destroy());
  assert.equal((await client.command('EHLO client.example')).code, 250);
  assert.equal((await client.command('MAIL FROM:<s@xn--bcher-kva.Example>')).code, 250);
  assert.equal((await client.command('RCPT TO:<@relay.example:Alice@xn--bcher-kva.test>')).code, 250);
  assert.equal((await client.command('RCPT TO:<u@[IPv6:2001:DB8::0001]>')).code, 250);
  await client.quit();
  assert.deepEqual(seen.map((s) => s.wire), ['s@xn--bcher-kva.Example', 'Alice@xn--bcher-kva.test', 'u@[IPv6:2001:DB8::0001]'], 'the proxy forwards these bytes');
  // Why the capture exists: if smtp-server stops rewriting addresses, this fails and the workaround may go.
  assert.equal(seen[0]?.library, 's@bücher.Example');
  assert.equal(seen[1]?.library, 'Alice@bücher.test');
  assert.notEqual(seen[2]?.library, seen[2]?.wire, 'smtp-server also rewrites IPv6 literals');
});
