/**
 * Bad input gets a clear SMTP error, nothing reaches the backend that the
 * client did not delimit properly, and a clean session afterwards still relays
 * (docs/design.md §4.4, §4.5).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend, type TestBackend } from '../helpers/smtp-backend.js';
import { withProxy, type RunningProxy } from '../helpers/with-proxy.js';

async function cleanSessionRelays(p: RunningProxy, backend: TestBackend): Promise<void> {
  const before = backend.messages.length;
  const client = await SmtpClient.open({ port: p.port });
  assert.equal((await client.command('EHLO clean.example')).code, 250);
  const r = await client.send('clean@sender.example', ['b@dest.example'], wireBody('Subject: clean\n\nstill works\n'));
  assert.equal(r.end?.code, 250, JSON.stringify(r));
  await client.quit();
  assert.equal(backend.messages.length, before + 1);
}

async function setup(t: { after(fn: () => Promise<void>): void }, config: Record<string, unknown> = {}) {
  const backend = await startBackend();
  t.after(() => backend.close());
  return { backend, config };
}

test('binary garbage gets 5xx replies, then the server gives up on the client; a clean session still relays', async (t) => {
  const { backend } = await setup(t);
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    // Seeded garbage: printed so a failure can be replayed.
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 100000);
    t.diagnostic(`garbage seed ${seed}`);
    let x = seed;
    const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31), x);
    const garbage = Buffer.from(Array.from({ length: 4096 }, () => rand() % 256));
    for (let i = 0; i < garbage.length; i++) if (garbage[i] === 0x0a) garbage[i] = 0x0d;
    client.write(garbage);
    client.write('\r\n');
    const reply = await client.read();
    assert.ok(reply.code >= 500, reply.lines.join());
    client.destroy();
    await cleanSessionRelays(p, backend);
  });
});

test('a 1 MB line without a newline gets 421 and a close', async (t) => {
  const { backend } = await setup(t);
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    client.write(Buffer.alloc(1024 * 1024, 'A'));
    const reply = await client.read();
    assert.equal(reply.code, 421);
    await client.waitClosed();
    await cleanSessionRelays(p, backend);
  });
});

test('NUL bytes in commands are refused', async (t) => {
  const { backend } = await setup(t);
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    assert.equal((await client.command('EHLO a\0b.example')).code >= 500, true);
    await client.command('EHLO ok.example');
    const mail = await client.command('MAIL FROM:<a\0@x.example>');
    assert.ok(mail.code >= 500, mail.lines.join());
    await client.quit();
    await cleanSessionRelays(p, backend);
  });
});

test('10,000 pipelined NOOPs are answered in order and the session goes on', async (t) => {
  const { backend } = await setup(t);
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port, timeout: 30_000 });
    await client.command('EHLO pipe.example');
    client.write('NOOP\r\n'.repeat(10_000));
    for (let i = 0; i < 10_000; i++) assert.equal((await client.read()).code, 250);
    const r = await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: after noops\n\nx\n'));
    assert.equal(r.end?.code, 250);
    await client.quit();
  });
});

test('commands out of order get 503 and nothing is relayed', async (t) => {
  const { backend } = await setup(t);
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO order.example');
    assert.equal((await client.command('RCPT TO:<b@dest.example>')).code, 503);
    assert.equal((await client.command('DATA')).code, 503);
    assert.equal((await client.command('MAIL FROM:<a@sender.example>')).code, 250);
    assert.equal((await client.command('MAIL FROM:<a@sender.example>')).code, 503);
    assert.equal((await client.command('DATA')).code, 503);
    await client.quit();
    assert.equal(backend.messages.length, 0);
    await cleanSessionRelays(p, backend);
  });
});

test('a declared SIZE over the limit gets 552 at MAIL; an undeclared oversized body gets 552 after the dot and is not delivered', async (t) => {
  const { backend } = await setup(t);
  await withProxy({ backendPort: backend.port, config: { limits: { maxMessageSize: 100_000 } } }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    const ehlo = await client.command('EHLO size.example');
    assert.ok(ehlo.lines.some((l) => /SIZE 100000/.test(l)), ehlo.lines.join('\n'));
    assert.equal((await client.command('MAIL FROM:<a@sender.example> SIZE=200000')).code, 552);
    const r = await client.send('a@sender.example', ['b@dest.example'], 'Subject: big\r\n\r\n' + ('z'.repeat(98) + '\r\n').repeat(2000));
    assert.equal(r.end?.code, 552, JSON.stringify(r.end));
    await client.quit();
    assert.equal(backend.messages.length, 0);
    await cleanSessionRelays(p, backend);
  });
});

const SMUGGLING_VARIANTS: ReadonlyArray<[string, string]> = [
  ['<LF>.<LF>', '\n.\n'],
  ['<LF>.<CR><LF>', '\n.\r\n'],
  ['<CR><LF>.<LF>', '\r\n.\n'],
  ['<CR>.<CR>', '\r.\r'],
  ['<CR><LF>.<CR>', '\r\n.\r'],
];

for (const [name, terminator] of SMUGGLING_VARIANTS) {
  test(`smuggling with ${name}: rejected with 550 5.5.2 by default, nothing reaches the backend`, async (t) => {
    const { backend } = await setup(t);
    await withProxy({ backendPort: backend.port }, async (p) => {
      const client = await SmtpClient.open({ port: p.port });
      await client.command('EHLO smuggler.example');
      const payload = `Subject: first\r\n\r\nhello${terminator}MAIL FROM:<evil@spoofed.example>\r\nRCPT TO:<victim@dest.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n`;
      const r = await client.send('a@sender.example', ['b@dest.example'], payload);
      assert.equal(r.end?.code, 550, JSON.stringify(r.end));
      assert.equal(r.end?.enhanced, '5.5.2');
      await client.quit();
      assert.equal(backend.messages.length, 0);
      await cleanSessionRelays(p, backend);
    });
  });

  test(`smuggling with ${name} in normalize mode: one message, line ends rewritten to CRLF, no second message`, async (t) => {
    const { backend } = await setup(t);
    await withProxy({ backendPort: backend.port, config: { smtp: { bareLineEndings: 'normalize' } } }, async (p) => {
      const client = await SmtpClient.open({ port: p.port });
      await client.command('EHLO smuggler.example');
      const payload = `Subject: first\r\n\r\nhello${terminator}MAIL FROM:<evil@spoofed.example>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n`;
      const r = await client.send('a@sender.example', ['b@dest.example'], payload);
      assert.equal(r.end?.code, 250, JSON.stringify(r.end));
      await client.quit();
      assert.equal(backend.messages.length, 1);
      const body = backend.messages[0]!.body.toString('latin1');
      assert.doesNotMatch(body, /(^|[^\r])\n/, 'no bare LF at the backend');
      assert.doesNotMatch(body, /\r(?!\n)/, 'no bare CR at the backend');
      assert.match(body, /MAIL FROM:<evil@spoofed\.example>/, 'the would-be command stays inside the one message');
    });
  });
}
