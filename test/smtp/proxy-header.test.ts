import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import {
  parseProxyHeader,
  ProxyHeaderError,
  readProxyHeader,
  type ProxyHeaderResult,
  type ReadProxyHeaderOptions,
} from '../../src/smtp/proxy-header.js';

interface Cleanup {
  after(fn: () => unknown): void;
}

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
const EHLO = 'EHLO x\r\n';

/**
 * Builds wire bytes from byte arrays and latin1 strings. Returns a plain
 * Uint8Array: with @types/node 20.9 under TypeScript 5.9 a Buffer is not
 * assignable to socket.write()'s Uint8Array<ArrayBufferLike> parameter.
 */
function bytes(...parts: (readonly number[] | string)[]): Uint8Array {
  const out: number[] = [];
  for (const part of parts) {
    if (typeof part === 'string') out.push(...Buffer.from(part, 'latin1'));
    else out.push(...part);
  }
  return Uint8Array.from(out);
}

function v2(command: number, famProto: number, body: readonly number[]): Uint8Array {
  return bytes(SIG, [0x20 | command, famProto, body.length >> 8, body.length & 0xff], body);
}

const V2_TCP4_BODY = [192, 0, 2, 1, 198, 51, 100, 25, 0xc3, 0x50, 0x00, 25];
// 2001:db8::1 → 2001:db8::25, ports 50000 → 25.
const V2_TCP6_BODY = [
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
  ...[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x25],
  0xc3, 0x50, 0x00, 25,
];
// PP2_TYPE_AUTHORITY "mx.example" and PP2_TYPE_NOOP with two bytes of padding.
const TLVS = [0x02, 0x00, 10, ...Buffer.from('mx.example'), 0x04, 0x00, 2, 0, 0];

function listenerCounts(socket: net.Socket): number[] {
  return ['data', 'end', 'close', 'error', 'readable'].map((e) => socket.listenerCount(e));
}

type Outcome = { ok: true; result: ProxyHeaderResult } | { ok: false; error: unknown };

/**
 * One loopback connection: the server side runs readProxyHeader on a socket
 * accepted paused (as the front door does), the client runs `send`.
 * Asserts the contract shared by every outcome: paused, no listeners left.
 */
async function exchange(
  t: Cleanup,
  send: (client: net.Socket) => Promise<void> | void,
  // Must not fire unless a test sets it: byte-by-byte trickles are slow on a loaded machine.
  options: ReadProxyHeaderOptions = { timeoutMs: 15_000 },
): Promise<{ outcome: Outcome; socket: net.Socket; client: net.Socket }> {
  let accept!: (s: net.Socket) => void;
  const accepted = new Promise<net.Socket>((resolve) => (accept = resolve));
  const server = net.createServer({ pauseOnConnect: true }, accept);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;

  const client = net.connect(port, '127.0.0.1');
  client.setNoDelay(true);
  client.on('error', () => {});
  t.after(() => client.destroy());
  await once(client, 'connect');
  const socket = await accepted;
  server.close();
  socket.on('error', () => {});
  t.after(() => socket.destroy());

  const before = listenerCounts(socket);
  const pending = readProxyHeader(socket, options).then(
    (result): Outcome => ({ ok: true, result }),
    (error: unknown): Outcome => ({ ok: false, error }),
  );
  await send(client);
  const outcome = await pending;
  assert.deepEqual(listenerCounts(socket), before, 'readProxyHeader left listeners behind');
  assert.equal(socket.isPaused(), true, 'socket must be left paused');
  return { outcome, socket, client };
}

function proxied(outcome: Outcome): ProxyHeaderResult {
  if (!outcome.ok) assert.fail(`expected a header, got ${String(outcome.error)}`);
  return outcome.result;
}

function failed(outcome: Outcome): ProxyHeaderError {
  if (outcome.ok) assert.fail(`expected ProxyHeaderError, got ${JSON.stringify(outcome.result)}`);
  assert.ok(outcome.error instanceof ProxyHeaderError, `expected ProxyHeaderError, got ${String(outcome.error)}`);
  return outcome.error;
}

/** Resumes the socket and reads until `expected` has arrived, as the SMTP layer would. */
async function readAfter(socket: net.Socket, expected: string): Promise<string> {
  let seen = '';
  socket.setEncoding('latin1');
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only got ${JSON.stringify(seen)}`)), 15_000);
    socket.on('data', (chunk: string) => {
      seen += chunk;
      if (seen.length >= expected.length) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  socket.resume();
  await done;
  return seen;
}

async function trickle(client: net.Socket, data: Uint8Array): Promise<void> {
  for (const byte of data) {
    client.write(Uint8Array.of(byte));
    // A pause between writes makes each byte its own TCP segment and 'data' event.
    await sleep(2);
  }
}

describe('readProxyHeader over loopback', () => {
  test('reads a v1 TCP4 header and leaves a pipelined EHLO in the same write readable', async (t) => {
    const { outcome, socket } = await exchange(t, (c) => {
      c.write(`PROXY TCP4 192.0.2.1 198.51.100.25 50000 25\r\n${EHLO}`);
    });
    assert.deepEqual(proxied(outcome), {
      kind: 'proxied',
      version: 1,
      remoteAddress: '192.0.2.1',
      remotePort: 50000,
      localAddress: '198.51.100.25',
      localPort: 25,
    });
    assert.equal(await readAfter(socket, EHLO), EHLO);
  });

  test('reads a v1 TCP6 header', async (t) => {
    const { outcome } = await exchange(t, (c) => {
      c.write('PROXY TCP6 2001:db8::1 2001:db8::25 65535 0\r\n');
    });
    assert.deepEqual(proxied(outcome), {
      kind: 'proxied',
      version: 1,
      remoteAddress: '2001:db8::1',
      remotePort: 65535,
      localAddress: '2001:db8::25',
      localPort: 0,
    });
  });

  test('treats v1 UNKNOWN, with or without addresses, as local', async (t) => {
    for (const header of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n']) {
      const { outcome, socket } = await exchange(t, (c) => {
        c.write(header + EHLO);
      });
      assert.deepEqual(proxied(outcome), { kind: 'local' });
      assert.equal(await readAfter(socket, EHLO), EHLO);
    }
  });

  test('reads a v2 PROXY TCP4 header, skipping TLVs, and keeps the EHLO after it', async (t) => {
    const { outcome, socket } = await exchange(t, (c) => {
      c.write(bytes([...v2(1, 0x11, [...V2_TCP4_BODY, ...TLVS])], EHLO));
    });
    assert.deepEqual(proxied(outcome), {
      kind: 'proxied',
      version: 2,
      remoteAddress: '192.0.2.1',
      remotePort: 50000,
      localAddress: '198.51.100.25',
      localPort: 25,
    });
    assert.equal(await readAfter(socket, EHLO), EHLO);
  });

  test('reads a v2 PROXY TCP6 header with TLVs', async (t) => {
    const { outcome, socket } = await exchange(t, (c) => {
      c.write(bytes([...v2(1, 0x21, [...V2_TCP6_BODY, ...TLVS])], EHLO));
    });
    assert.deepEqual(proxied(outcome), {
      kind: 'proxied',
      version: 2,
      remoteAddress: '2001:db8::1',
      remotePort: 50000,
      localAddress: '2001:db8::25',
      localPort: 25,
    });
    assert.equal(await readAfter(socket, EHLO), EHLO);
  });

  test('treats v2 LOCAL (load balancer health check) as local, whatever the family', async (t) => {
    const { outcome, socket } = await exchange(t, (c) => {
      c.write(bytes([...v2(0, 0x11, V2_TCP4_BODY)], EHLO));
    });
    assert.deepEqual(proxied(outcome), { kind: 'local' });
    assert.equal(await readAfter(socket, EHLO), EHLO);
  });

  test('treats v2 AF_UNIX, UNSPEC and UDP as local', async (t) => {
    for (const [famProto, body] of [
      [0x31, new Array<number>(216).fill(0x61)],
      [0x00, []],
      [0x12, V2_TCP4_BODY],
    ] as const) {
      const { outcome, socket } = await exchange(t, (c) => {
        c.write(bytes([...v2(1, famProto, body)], EHLO));
      });
      assert.deepEqual(proxied(outcome), { kind: 'local' }, `family/proto 0x${famProto.toString(16)}`);
      assert.equal(await readAfter(socket, EHLO), EHLO);
    }
  });

  test('reads v1 and v2 headers trickled one byte per segment, then the EHLO', async (t) => {
    const mail = `${EHLO}MAIL FROM:<a@example.org>\r\n`;
    for (const header of [bytes('PROXY TCP6 2001:db8::1 2001:db8::25 50000 25\r\n'), v2(1, 0x21, [...V2_TCP6_BODY, ...TLVS])]) {
      const { outcome, socket, client } = await exchange(t, (c) => trickle(c, header));
      const result = proxied(outcome);
      assert.equal(result.kind === 'proxied' && result.remoteAddress, '2001:db8::1');
      await trickle(client, bytes(mail));
      assert.equal(await readAfter(socket, mail), mail);
    }
  });

  test('keeps later writes queued behind the unshifted bytes in order', async (t) => {
    const { outcome, socket, client } = await exchange(t, (c) => {
      c.write(`PROXY TCP4 192.0.2.1 198.51.100.25 50000 25\r\nEHLO `);
    });
    assert.equal(proxied(outcome).kind, 'proxied');
    client.write('x\r\nMAIL FROM:<a@example.org>\r\n');
    await sleep(20);
    assert.equal(await readAfter(socket, `${EHLO}MAIL FROM:<a@example.org>\r\n`), `${EHLO}MAIL FROM:<a@example.org>\r\n`);
  });

  test('rejects garbage at once instead of waiting for the timeout', async (t) => {
    // 'malformed' (not 'timeout') is the proof; the elapsed check only backs it up, so the
    // timeout is set far above anything a loaded machine needs for five loopback exchanges.
    const timeoutMs = 30_000;
    const started = Date.now();
    for (const junk of ['EHLO x\r\n', 'GET / HTTP/1.1\r\n', '\x16\x03\x01', 'PROXZ TCP4', '\r\n\r\n\x00\r\nQUIX\n']) {
      const { outcome } = await exchange(t, (c) => {
        c.write(junk);
      }, { timeoutMs });
      assert.equal(failed(outcome).reason, 'malformed', JSON.stringify(junk));
    }
    assert.ok(Date.now() - started < timeoutMs);
  });

  test('rejects malformed v1 fields', async (t) => {
    for (const header of [
      'PROXY TCP4 hello world 1 2\r\n',
      'PROXY TCP4 192.0.2.1 198.51.100.25 99999 25\r\n',
      'PROXY TCP4 192.0.2.1 198.51.100.25 025 25\r\n',
      'PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n',
      'PROXY TCP6 192.0.2.1 198.51.100.25 1 2\r\n',
      'PROXY TCP4  192.0.2.1 198.51.100.25 1 2\r\n',
      'PROXY TCP4 192.0.2.1 198.51.100.25 1 2 3\r\n',
      'PROXY UDP4 192.0.2.1 198.51.100.25 1 2\r\n',
      'PROXY TCP4 192.0.2.1 198.51.100.25 1 2\n',
    ]) {
      const { outcome } = await exchange(t, (c) => {
        c.write(header);
      });
      assert.equal(failed(outcome).reason, 'malformed', header);
    }
  });

  test('rejects a v1 line longer than 107 bytes without waiting for its end', async (t) => {
    const { outcome } = await exchange(t, (c) => {
      c.write(`PROXY TCP6 ${'1'.repeat(120)}`);
    });
    assert.equal(failed(outcome).reason, 'too-long');
  });

  test('rejects a v2 length field over the limit as soon as the fixed part arrives', async (t) => {
    const { outcome } = await exchange(t, (c) => {
      c.write(bytes(SIG, [0x21, 0x11, 0xff, 0xff]));
    });
    assert.equal(failed(outcome).reason, 'too-long');
  });

  test('rejects v2 with a bad version, command, family, or a length short of its addresses', async (t) => {
    for (const header of [
      bytes(SIG, [0x11, 0x11, 0, 12], V2_TCP4_BODY),
      bytes(SIG, [0x22, 0x11, 0, 12], V2_TCP4_BODY),
      bytes(SIG, [0x21, 0x41, 0, 12], V2_TCP4_BODY),
      bytes(SIG, [0x21, 0x13, 0, 12], V2_TCP4_BODY),
      bytes(SIG, [0x21, 0x21, 0, 12], V2_TCP4_BODY),
    ]) {
      const { outcome } = await exchange(t, (c) => {
        c.write(header);
      });
      assert.equal(failed(outcome).reason, 'malformed', Buffer.from(header).toString('hex'));
    }
  });

  test('fails with closed when the peer sends a truncated header and closes', async (t) => {
    for (const part of [bytes('PROXY TCP4 192.0.2.1 19'), v2(1, 0x21, V2_TCP6_BODY).subarray(0, 30)]) {
      const { outcome } = await exchange(t, (c) => {
        c.end(part);
      });
      assert.equal(failed(outcome).reason, 'closed');
    }
  });

  test('fails with timeout when the header never completes', async (t) => {
    const { outcome } = await exchange(t, (c) => {
      c.write('PROXY TCP4 192.0.2.1');
    }, { timeoutMs: 100 });
    const err = failed(outcome);
    assert.equal(err.reason, 'timeout');
    assert.match(err.message, /100 ms/);
  });

  test('fails with closed on a socket that is already destroyed', async (t) => {
    const { socket } = await exchange(t, (c) => {
      c.write('PROXY UNKNOWN\r\n');
    });
    socket.destroy();
    await assert.rejects(readProxyHeader(socket, { timeoutMs: 100 }), (err: unknown) => err instanceof ProxyHeaderError && err.reason === 'closed');
  });
});

describe('parseProxyHeader', () => {
  test('needs more bytes for every strict prefix of a valid header, and consumes exactly the header', () => {
    for (const header of [
      bytes('PROXY TCP4 192.0.2.1 198.51.100.25 50000 25\r\n'),
      bytes('PROXY UNKNOWN\r\n'),
      v2(1, 0x11, [...V2_TCP4_BODY, ...TLVS]),
      v2(1, 0x21, V2_TCP6_BODY),
      v2(0, 0x00, []),
    ]) {
      for (let n = 0; n < header.length; n++) {
        assert.deepEqual(parseProxyHeader(Buffer.from(header.subarray(0, n))), { done: false }, `prefix ${n} of ${Buffer.from(header).toString('hex')}`);
      }
      const step = parseProxyHeader(Buffer.from(bytes([...header], EHLO)));
      assert.equal(step.done && step.consumed, header.length);
    }
  });

  test('formats v2 IPv6 addresses in RFC 5952 form, mapped IPv4 as a dotted quad', () => {
    const addr = (...groups: number[]): number[] => groups.flatMap((g) => [g >> 8, g & 0xff]);
    const cases: [number[], string][] = [
      [addr(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201), '::ffff:192.0.2.1'],
      [addr(0x2001, 0xdb8, 0, 0, 1, 0, 0, 1), '2001:db8::1:0:0:1'],
      [addr(0x2001, 0xdb8, 0, 1, 1, 1, 1, 1), '2001:db8:0:1:1:1:1:1'],
      [addr(0, 0, 0, 0, 0, 0, 0, 1), '::1'],
      [addr(0, 0, 0, 0, 0, 0, 0, 0), '::'],
      [addr(0xfe80, 0, 0, 0, 0, 0, 0, 0), 'fe80::'],
    ];
    for (const [src, text] of cases) {
      const step = parseProxyHeader(Buffer.from(v2(1, 0x21, [...src, ...new Array<number>(20).fill(0)])));
      assert.ok(step.done && step.result.kind === 'proxied');
      assert.equal(step.result.remoteAddress, text);
    }
  });

  test('only ever throws ProxyHeaderError on random input (seeded fuzz)', () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    let state = seed;
    const rand = (): number => {
      state = (state * 1103515245 + 12345) % 2 ** 31;
      return state / 2 ** 31;
    };
    const seeds = [bytes('PROXY TCP4 192.0.2.1 198.51.100.25 50000 25\r\n'), v2(1, 0x21, [...V2_TCP6_BODY, ...TLVS])];
    for (let i = 0; i < 2000; i++) {
      const base = [...(seeds[i % 2] ?? [])];
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) base[Math.floor(rand() * base.length)] = Math.floor(rand() * 256);
      const input = Buffer.from(base.slice(0, Math.floor(rand() * (base.length + 1))));
      try {
        parseProxyHeader(input);
      } catch (err) {
        assert.ok(err instanceof ProxyHeaderError, `seed ${seed} case ${i}: ${String(err)}`);
      }
    }
  });
});
