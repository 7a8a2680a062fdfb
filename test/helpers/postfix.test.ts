/**
 * Self-test of the private-Postfix harness (test/helpers/postfix.ts), with a raw SMTP exchange so the
 * bytes on the wire are exactly what we wrote.
 */
import assert from 'node:assert/strict';
import { access } from 'node:fs/promises';
import net from 'node:net';
import { test } from 'node:test';
import { canRunPostfix, startPostfix, type PostfixInstance, type PostfixOptions } from './postfix.js';
import type { TestContext } from './require-tool.js';

/** Minimal SMTP client: one reply (possibly multi-line) per call, no pipelining. */
class RawSmtp {
  private buffer = '';
  private waiting: (() => void) | undefined;
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.waiting?.();
    });
    const end = (): void => {
      this.closed = true;
      this.waiting?.();
    };
    socket.on('end', end);
    socket.on('close', end);
    socket.on('error', end);
  }

  /** Connects and returns the client with the greeting already read. */
  static async connect(port: number): Promise<{ client: RawSmtp; greeting: string }> {
    const socket = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawSmtp(socket);
    return { client, greeting: await client.reply() };
  }

  /** Reads the next complete reply: lines until one whose 4th character is a space. */
  async reply(timeoutMs = 5_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = this.completeReplyEnd();
      if (end >= 0) {
        const text = this.buffer.slice(0, end);
        this.buffer = this.buffer.slice(end);
        return text.trimEnd();
      }
      if (this.closed) return `(closed)${this.buffer}`;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SMTP reply within ${timeoutMs} ms; buffer: ${JSON.stringify(this.buffer)}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiting = undefined;
    }
  }

  private completeReplyEnd(): number {
    let start = 0;
    for (;;) {
      const nl = this.buffer.indexOf('\n', start);
      if (nl < 0) return -1;
      if (this.buffer[start + 3] !== '-') return nl + 1;
      start = nl + 1;
    }
  }

  write(raw: string): void {
    this.socket.write(raw, 'latin1');
  }

  async command(line: string): Promise<string> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  close(): void {
    this.socket.destroy();
  }
}


async function withPostfix(t: TestContext, options: PostfixOptions = {}): Promise<PostfixInstance> {
  const postfix = await startPostfix(options);
  t.after(() => postfix.stop());
  return postfix;
}

function message(subject: string, to: string): string {
  return `From: sender@example.org\r\nTo: ${to}\r\nSubject: ${subject}\r\n\r\nbody of ${subject}\r\n`;
}

/** Sends one message through an open session (EHLO already done); returns the reply to the final dot. */
async function sendMail(client: RawSmtp, to: string, subject: string): Promise<string> {
  assert.match(await client.command('MAIL FROM:<sender@example.org>'), /^250 /);
  assert.match(await client.command(`RCPT TO:<${to}>`), /^250 /);
  assert.match(await client.command('DATA'), /^354 /);
  client.write(`${message(subject, to)}.\r\n`);
  return client.reply();
}

test('a message to alice@local.test is delivered into a readable mailbox', async (t) => {
  if (!canRunPostfix(t)) return;
  const postfix = await withPostfix(t);
  const { client, greeting } = await RawSmtp.connect(postfix.port);
  t.after(() => client.close());
  assert.match(greeting, /^220 /);
  assert.match(await client.command('EHLO client.example'), /^250[ -]/);
  assert.match(await sendMail(client, 'alice@local.test', 'hello alice'), /^250 /);
  await client.command('QUIT');

  const [delivered] = await postfix.waitForMessages('alice', 1, 10_000);
  assert.ok(delivered !== undefined);
  assert.match(delivered, /^Return-Path: <sender@example\.org>/m);
  assert.match(delivered, /^Delivered-To: alice@local\.test/m);
  // smtpd_peername_lookup = no: the client name is never looked up.
  assert.match(delivered, /^Received: from client\.example \(unknown \[127\.0\.0\.1\]\)/m);
  assert.match(delivered, /^Subject: hello alice/m);
  assert.deepEqual(await postfix.readMailbox('bob'), []);
  assert.match(await postfix.waitForLog(/status=sent/, 5_000), /to=<alice@local\.test>/);
});

test('relay to a foreign domain is refused when 127.0.0.1 is outside mynetworks', async (t) => {
  if (!canRunPostfix(t)) return;
  const postfix = await withPostfix(t, { mynetworks: '192.0.2.0/24' });
  const { client } = await RawSmtp.connect(postfix.port);
  t.after(() => client.close());
  await client.command('EHLO client.example');
  assert.match(await client.command('MAIL FROM:<sender@example.org>'), /^250 /);
  assert.match(await client.command('RCPT TO:<someone@foreign.example>'), /^554 5\.7\.1 .*Relay access denied/);
  // The local domain is still accepted from outside mynetworks.
  assert.match(await client.command('RCPT TO:<bob@local.test>'), /^250 /);
  await client.command('QUIT');
});

test('XCLIENT from an authorized host sets the client address, and a second XCLIENT is refused', async (t) => {
  if (!canRunPostfix(t)) return;
  const postfix = await withPostfix(t, { xclientHosts: '127.0.0.1' });
  const { client } = await RawSmtp.connect(postfix.port);
  t.after(() => client.close());
  const ehlo = await client.command('EHLO proxy.example');
  assert.match(ehlo, /^250-XCLIENT /m);
  // After XCLIENT, Postfix answers with a new greeting and the session starts over.
  assert.match(await client.command('XCLIENT ADDR=192.0.2.7 NAME=[UNAVAILABLE]'), /^220 /);
  assert.match(await client.command('EHLO sender.example'), /^250[ -]/);
  assert.match(await sendMail(client, 'alice@local.test', 'via xclient'), /^250 /);
  // docs/platform-notes.md: authorization is re-checked against the forwarded address, which is not authorized.
  assert.match(await client.command('XCLIENT ADDR=192.0.2.8'), /^550 5\.7\.0 .*insufficient authorization/);
  await client.command('QUIT');

  const [delivered] = await postfix.waitForMessages('alice', 1, 10_000);
  assert.ok(delivered !== undefined);
  assert.match(delivered, /^Received: from sender\.example \(unknown \[192\.0\.2\.7\]\)/m);
  assert.doesNotMatch(delivered, /127\.0\.0\.1/);
});

test('two instances run at once, each with its own port and mailboxes', async (t) => {
  if (!canRunPostfix(t)) return;
  const [a, b] = await Promise.all([withPostfix(t), withPostfix(t, { localDomain: 'other.test', localUsers: ['carol'] })]);
  assert.notEqual(a.port, b.port);
  for (const [postfix, to, user] of [
    [a, 'alice@local.test', 'alice'],
    [b, 'carol@other.test', 'carol'],
  ] as const) {
    const { client } = await RawSmtp.connect(postfix.port);
    t.after(() => client.close());
    await client.command('EHLO client.example');
    assert.match(await sendMail(client, to, `to ${user}`), /^250 /);
    await client.command('QUIT');
    const [delivered] = await postfix.waitForMessages(user, 1, 10_000);
    assert.match(delivered ?? '', new RegExp(`^Subject: to ${user}`, 'm'));
  }
  assert.deepEqual(await b.readMailbox('alice'), []);
  const ids = new Set([...(await a.pids()), ...(await b.pids())]);
  assert.equal(ids.size, (await a.pids()).length + (await b.pids()).length, 'no process shared between instances');
});

test('restart() keeps port and mailboxes; stop() leaves no process of the instance', async (t) => {
  if (!canRunPostfix(t)) return;
  const postfix = await startPostfix({});
  t.after(() => postfix.stop());
  const other = await withPostfix(t);
  const send = async (subject: string): Promise<void> => {
    const { client } = await RawSmtp.connect(postfix.port);
    await client.command('EHLO client.example');
    assert.match(await sendMail(client, 'bob@local.test', subject), /^250 /);
    await client.command('QUIT');
    client.close();
  };
  await send('before restart');
  await postfix.waitForMessages('bob', 1, 10_000);

  const before = await postfix.pids();
  assert.ok(before.length >= 3, `master and daemons running: ${before.join(',')}`);
  await postfix.restart();
  const after = await postfix.pids();
  assert.ok(after.every((pid) => !before.includes(pid)), 'restart replaced every process');
  await send('after restart');
  const messages = await postfix.waitForMessages('bob', 2, 10_000);
  assert.match(messages[0] ?? '', /^Subject: before restart/m);
  assert.match(messages[1] ?? '', /^Subject: after restart/m);

  const otherPids = await other.pids();
  await postfix.stop();
  assert.deepEqual(await postfix.pids(), []);
  await assert.rejects(access(postfix.scratchDir), { code: 'ENOENT' });
  await assert.rejects(RawSmtp.connect(postfix.port), { code: 'ECONNREFUSED' });
  // Stopping one instance leaves the other running.
  assert.deepEqual((await other.pids()).sort(), otherPids.sort());
  await postfix.stop(); // idempotent
});

test('observation: how Postfix 3.7 treats a bare LF dot inside DATA', async (t) => {
  if (!canRunPostfix(t)) return;
  const postfix = await withPostfix(t);
  const { client } = await RawSmtp.connect(postfix.port);
  t.after(() => client.close());
  await client.command('EHLO client.example');
  await client.command('MAIL FROM:<sender@example.org>');
  await client.command('RCPT TO:<alice@local.test>');
  await client.command('DATA');
  client.write('Subject: bare lf\r\n\r\nline one\n.\nRSET\r\nline after\r\n.\r\n');
  const first = await client.reply();
  let second = '';
  try {
    second = await client.reply(1_500);
  } catch {
    second = '(no second reply)';
  }
  await client.command('QUIT').catch(() => '');
  t.diagnostic(`reply after bare-LF dot: ${first} | next: ${second}`);
  const messages = await postfix.waitForMessages('alice', 1, 5_000).catch(() => []);
  t.diagnostic(`delivered ${messages.length} message(s); body: ${JSON.stringify(messages[0]?.split('\n\n')[1] ?? '')}`);
});
