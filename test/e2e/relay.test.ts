/**
 * End to end over loopback: a client talks SMTP to the real proxy, which
 * relays to an in-process backend (test/helpers/smtp-backend.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy } from '../helpers/with-proxy.js';
import { FakeBackend } from '../helpers/fake-backend.js';

test('a message with 8-bit text and dot lines reaches the backend byte for byte, with the exact envelope and the client\'s address', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port, localAddress: '127.0.0.23' });
    assert.equal((await client.command('EHLO sender.example')).code, 250);
    const text = 'Subject: Grüße\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nÄÖÜ ß € 日本\r\nlast line\r\n';
    const body = Buffer.from(text, 'utf8');
    const r = await client.send('alice@sender.example', ['bob@dest.example', 'carol@dest.example'], Buffer.from(wireBody(text), 'utf8'));
    assert.equal(r.end?.code, 250, JSON.stringify(r));
    await client.quit();
    assert.equal(backend.messages.length, 1);
    const m = backend.messages[0]!;
    assert.deepEqual(m.body, body);
    assert.equal(m.from, 'alice@sender.example');
    assert.deepEqual(m.to, ['bob@dest.example', 'carol@dest.example']);
    assert.equal(m.clientAddress, '127.0.0.23');
    assert.equal(m.helo, 'sender.example');
  });
});

test('the client sees 250 only with the backend\'s own reply text', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    const r = await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: x\n\nhi\n'));
    assert.equal(r.end?.code, 250);
    assert.match(r.end?.text ?? '', /Ok: queued/);
    await client.quit();
  });
});

test('a 20 MB message is streamed through intact', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { limits: { maxMessageSize: 30_000_000 } } }, async (p) => {
    const client = await SmtpClient.open({ port: p.port, timeout: 60_000 });
    await client.command('EHLO big.example');
    const line = 'x'.repeat(998) + '\r\n';
    const body = 'Subject: big\r\n\r\n' + line.repeat(20_000);
    const r = await client.send('a@big.example', ['b@dest.example'], body);
    assert.equal(r.end?.code, 250, JSON.stringify(r.end));
    await client.quit();
    assert.equal(backend.messages[0]?.body.length, Buffer.byteLength(body));
    assert.ok(backend.messages[0]?.body.equals(Buffer.from(body)));
  });
});

test('a recipient the backend rejects gets the backend\'s 550 with its enhanced code; the others are delivered', async (t) => {
  const backend = await startBackend({ rcpt: (a) => (a.startsWith('nobody@') ? { code: 550, text: '5.1.1 <nobody@dest.example>: Recipient address rejected: User unknown' } : undefined) });
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    const r = await client.send('a@sender.example', ['bob@dest.example', 'nobody@dest.example', 'carol@dest.example'], wireBody('Subject: x\n\nhi\n'));
    assert.deepEqual(r.rcpt.map((x) => x.code), [250, 550, 250]);
    assert.equal(r.rcpt[1]?.enhanced, '5.1.1');
    assert.match(r.rcpt[1]?.text ?? '', /User unknown/);
    assert.equal(r.end?.code, 250);
    await client.quit();
    assert.deepEqual(backend.messages[0]?.to, ['bob@dest.example', 'carol@dest.example']);
  });
});

test('backend down: the client gets 451 at MAIL, never 250, and the proxy keeps serving', async (t) => {
  const backend = await startBackend();
  const port = backend.port;
  await backend.close();
  await withProxy({ backendPort: port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    const mail = await client.command('MAIL FROM:<a@sender.example>');
    assert.equal(mail.code, 451);
    assert.equal(mail.enhanced?.startsWith('4.4.'), true, mail.lines.join());
    assert.equal((await client.command('NOOP')).code, 250);
    await client.quit();
    const again = await startBackend({}, port);
    t.after(() => again.close());
    // The pool reconnects with backoff; the next session relays.
    let code = 0;
    for (let i = 0; i < 50 && code !== 250; i++) {
      const c = await SmtpClient.open({ port: p.port });
      await c.command('EHLO sender.example');
      code = (await c.send('a@sender.example', ['b@dest.example'], wireBody('Subject: x\n\nhi\n'))).end?.code ?? 0;
      await c.quit();
      if (code !== 250) await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(code, 250);
    assert.equal(again.messages.length, 1);
  });
});

test('backend closes mid-DATA: the client gets 451 and nothing is delivered', async (t) => {
  const backend = await startBackend({ dropAfterBodyBytes: 10_000 });
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    const r = await client.send('a@sender.example', ['b@dest.example'], 'Subject: x\r\n\r\n' + ('y'.repeat(78) + '\r\n').repeat(2000));
    assert.equal(r.end?.code, 451, JSON.stringify(r.end));
    assert.equal(r.end?.enhanced, '4.4.2');
    // The session goes on: the next transaction takes a fresh backend connection.
    backend.behaviour = {};
    const r2 = await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: second\n\nok\n'));
    assert.equal(r2.end?.code, 250);
    await client.quit();
    assert.equal(backend.messages.length, 1);
    assert.match(backend.messages[0]!.body.toString(), /second/);
  });
});

test('one client session carries several messages over one backend connection, with one XCLIENT', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    for (let i = 0; i < 5; i++) {
      const r = await client.send('a@sender.example', ['b@dest.example'], wireBody(`Subject: ${i}\n\nmessage ${i}\n`));
      assert.equal(r.end?.code, 250);
    }
    await client.command('RSET');
    const r = await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: after rset\n\nx\n'));
    assert.equal(r.end?.code, 250);
    await client.quit();
    assert.equal(backend.messages.length, 6);
    assert.equal(new Set(backend.messages.map((m) => m.connectionId)).size, 1);
  });
});

test('sessions from different clients never share a backend connection, and each carries its own address', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { backend: { poolSize: 3, warm: 1 } } }, async (p) => {
    for (let i = 0; i < 6; i++) {
      const client = await SmtpClient.open({ port: p.port, localAddress: `127.0.1.${i + 1}` });
      await client.command(`EHLO client${i}.example`);
      const r = await client.send(`s${i}@sender.example`, ['b@dest.example'], wireBody('Subject: x\n\nhi\n'));
      assert.equal(r.end?.code, 250);
      await client.quit();
    }
    assert.equal(backend.messages.length, 6);
    assert.equal(new Set(backend.messages.map((m) => m.connectionId)).size, 6);
    backend.messages.forEach((m, i) => {
      assert.equal(m.clientAddress, `127.0.1.${i + 1}`);
      assert.equal(m.helo, `client${i}.example`);
    });
    assert.ok(backend.stats.maxOpen <= 3, `backend saw ${backend.stats.maxOpen} connections at once, pool size is 3`);
  });
});

test('each session writes one JSON log line with client, HELO, envelope and result', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port, localAddress: '127.0.0.77' });
    await client.command('EHLO logged.example');
    await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: x\n\nhi\n'));
    await client.quit();
    const [line] = await p.waitSessions(1);
    assert.equal(line?.client, '127.0.0.77');
    assert.equal(line?.helo, 'logged.example');
    const messages = line?.messages as Array<{ from: string; rcpt: Array<{ address: string }>; result: string; reply: string }>;
    assert.equal(messages[0]?.from, 'a@sender.example');
    assert.equal(messages[0]?.rcpt[0]?.address, 'b@dest.example');
    assert.equal(messages[0]?.result, 'relayed');
    assert.match(messages[0]?.reply ?? '', /^250 /);
  });
});

test('a backend 421 reaches the client as 451 4.4.2, not as 421, and the next transaction of the session relays', async (t) => {
  const backend = await startBackend({ rcpt: (a) => (a.startsWith('shutdown@') ? { code: 421, text: '4.3.2 Service shutting down' } : undefined) });
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    const r = await client.send('a@sender.example', ['shutdown@dest.example'], wireBody('x\n'));
    assert.equal(r.rcpt[0]?.code, 451);
    assert.equal(r.rcpt[0]?.enhanced, '4.4.2');
    assert.equal((await client.command('RSET')).code, 250);
    const again = await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: next\n\nx\n'));
    assert.equal(again.end?.code, 250);
    await client.quit();
    assert.equal(backend.messages.length, 1);
    assert.equal(backend.connections.size, 2, 'the second transaction took a fresh backend connection');
  });
});

test('back-to-back messages need no RSET at the backend; an abandoned transaction is reset before the next MAIL', async (t) => {
  const backend = await FakeBackend.start({ rejectRcpt: /bad@/ });
  t.after(() => backend.stop());
  await withProxy({ backendPort: backend.port }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    await client.command('EHLO sender.example');
    assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('one\n'))).end?.code, 250);
    assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('two\n'))).end?.code, 250);
    assert.deepEqual(backend.commands('RSET'), []);
    const r = await client.send('a@sender.example', ['bad@dest.example'], wireBody('three\n'));
    assert.equal(r.rcpt[0]?.code, 550);
    await client.command('RSET');
    assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('four\n'))).end?.code, 250);
    await client.quit();
    assert.equal(backend.commands('RSET').length, 1);
    assert.equal(backend.messages.length, 3);
  });
});
