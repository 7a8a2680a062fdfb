/**
 * The front door as a client meets it: banner, EHLO extensions, no AUTH on
 * port 25, STARTTLS only with our own certificate, PROXY v1/v2 from trusted
 * load balancers only, IPv6.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { withProxy } from '../helpers/with-proxy.js';

test('the banner carries the configured hostname and text; EHLO offers SIZE, PIPELINING, 8BITMIME, SMTPUTF8 and neither AUTH nor STARTTLS without a certificate', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { banner: 'mail front' } }, async (p) => {
    const client = await SmtpClient.connect({ port: p.port });
    const banner = await client.read();
    assert.equal(banner.lines[0], '220 tarpit.test ESMTP mail front');
    const ehlo = await client.command('EHLO me.example');
    const ext = ehlo.lines.slice(1).map((l) => l.slice(4));
    for (const want of ['PIPELINING', '8BITMIME', 'SMTPUTF8', `SIZE ${p.config.limits.maxMessageSize}`]) assert.ok(ext.includes(want), `${want} in ${ext.join(',')}`);
    assert.ok(!ext.some((e) => e.startsWith('AUTH')), 'no AUTH on port 25');
    assert.ok(!ext.includes('STARTTLS'), 'no STARTTLS without a certificate');
    assert.ok((await client.command('STARTTLS')).code >= 500);
    assert.ok((await client.command('AUTH PLAIN AGFAYg==')).code >= 500);
    await client.quit();
  });
});

test('with a certificate configured, STARTTLS is offered and a message relays over TLS', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=tarpit.test'], { stdio: 'ignore' });
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { tls: { key, cert } } }, async (p) => {
    const client = await SmtpClient.open({ port: p.port });
    const ehlo = await client.command('EHLO tls.example');
    assert.ok(ehlo.lines.some((l) => l.endsWith('STARTTLS')));
    assert.equal((await client.command('STARTTLS')).code, 220);
    const secure = tlsConnect({ socket: client.socket, rejectUnauthorized: false, servername: 'tarpit.test' });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    const lines: string[] = [];
    let buf = '';
    secure.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      let i;
      while ((i = buf.indexOf('\r\n')) !== -1) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
    });
    const expectReply = async (code: number) => {
      // Up to 15 s: a loaded machine may take seconds, and only a missing reply should fail.
      for (let n = 0; n < 1500; n++) {
        const last = lines.find((l) => /^\d{3} /.test(l));
        if (last) {
          lines.splice(0, lines.indexOf(last) + 1);
          assert.equal(Number(last.slice(0, 3)), code, last);
          return;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.fail(`no ${code} reply`);
    };
    for (const [cmd, code] of [['EHLO tls.example', 250], ['MAIL FROM:<a@tls.example>', 250], ['RCPT TO:<b@dest.example>', 250], ['DATA', 354]] as const) {
      secure.write(cmd + '\r\n');
      await expectReply(code);
    }
    secure.write(wireBody('Subject: over tls\n\nsecret\n') + '.\r\n');
    await expectReply(250);
    secure.end('QUIT\r\n');
    assert.equal(backend.messages.length, 1);
  });
});

function proxyV2(src: string, srcPort: number, dst: string, dstPort: number): Buffer {
  const sig = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
  const addr = Buffer.alloc(12);
  src.split('.').forEach((o, i) => addr.writeUInt8(Number(o), i));
  dst.split('.').forEach((o, i) => addr.writeUInt8(Number(o), 4 + i));
  addr.writeUInt16BE(srcPort, 8);
  addr.writeUInt16BE(dstPort, 10);
  const head = Buffer.from([0x21, 0x11, 0x00, 12]);
  return Buffer.concat([sig, head, addr]);
}

test('PROXY v1 and v2 headers from a trusted load balancer give the backend the real client address', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { proxyProtocol: { trustedProxies: ['127.0.6.0/24'] } } }, async (p) => {
    for (const [header, expected] of [
      [Buffer.from('PROXY TCP4 198.51.100.7 192.0.2.1 40000 25\r\n'), '198.51.100.7'],
      [proxyV2('203.0.113.9', 41000, '192.0.2.1', 25), '203.0.113.9'],
    ] as const) {
      const client = await SmtpClient.connect({ port: p.port, localAddress: '127.0.6.1' });
      client.write(header);
      assert.equal((await client.read()).code, 220);
      await client.command('EHLO lb-client.example');
      assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: via lb\n\nx\n'))).end?.code, 250);
      await client.quit();
      assert.equal(backend.messages.at(-1)?.clientAddress, expected);
    }
  });
});

test('a PROXY header from an untrusted address is not honoured', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { proxyProtocol: { trustedProxies: ['127.0.6.0/24'] } } }, async (p) => {
    const client = await SmtpClient.open({ port: p.port, localAddress: '127.0.7.1' });
    const reply = await client.command('PROXY TCP4 198.51.100.7 192.0.2.1 40000 25');
    assert.ok(reply.code >= 500, reply.lines.join());
    await client.command('EHLO x.example');
    assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('x\n'))).end?.code, 250);
    await client.quit();
    assert.equal(backend.messages.at(-1)?.clientAddress, '127.0.7.1');
  });
});

test('a trusted load balancer that sends garbage instead of a PROXY header is disconnected', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { proxyProtocol: { trustedProxies: ['127.0.6.0/24'] } } }, async (p) => {
    const client = await SmtpClient.connect({ port: p.port, localAddress: '127.0.6.2' });
    client.write('EHLO no-header.example\r\n');
    await client.waitClosed();
  });
});

test('the proxy listens on IPv6 loopback and passes IPv6 clients to the backend', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, config: { listen: '[::1]:0' } }, async (p) => {
    const client = await SmtpClient.open({ host: '::1', port: p.port });
    await client.command('EHLO v6.example');
    assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('x\n'))).end?.code, 250);
    await client.quit();
    assert.equal(backend.messages[0]?.clientAddress, '::1');
  });
});

test('a client that resets before it is accepted is counted but not logged with an empty address (issue 13)', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  await withProxy({ backendPort: backend.port, metrics: true, config: { limits: { maxConnections: 2 }, tarpit: { maxHeld: 1 } } }, async (p) => {
    const clients = [await SmtpClient.open({ port: p.port }), await SmtpClient.open({ port: p.port })];
    // spawnSync blocks this process, proxy included: the connection is reset while it waits in the
    // kernel's accept queue, so the proxy accepts a socket that no longer has a peer address.
    const reset = `const s = require('net').connect(${p.port}, '127.0.0.1', () => s.resetAndDestroy()); s.on('error', () => {}); s.on('close', () => process.exit(0));`;
    assert.equal(spawnSync(process.execPath, ['-e', reset]).status, 0);
    const deadline = Date.now() + 10_000;
    let refused = 0;
    while (refused < 1 && Date.now() < deadline) {
      const text = await (await fetch(`http://127.0.0.1:${p.metricsPort}/metrics`)).text();
      refused = Number(/^smtp_tarpit_connections_total\{result="refused_cap"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      if (refused < 1) await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(refused, 1, 'the refusal is counted');
    assert.deepEqual(p.logs.filter((l) => l.client === ''), [], 'no line with an empty client');
    for (const c of clients) await c.quit();
  });
});

test('a backend down at start-up is a warning with its reason and code, without a stack trace (issue 13)', async () => {
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  const logs = await withProxy({ backendPort: port }, (p) => Promise.resolve([...p.logs]));
  const warn = logs.find((l) => l.msg === 'backend unreachable at start-up; clients get 451 until it answers');
  assert.ok(warn, JSON.stringify(logs));
  assert.equal(warn.code, 'ECONNREFUSED');
  assert.match(String(warn.reason), /ECONNREFUSED/);
  assert.doesNotMatch(JSON.stringify(warn), /stack/);
});
