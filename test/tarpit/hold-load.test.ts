/**
 * Many holds at once over loopback: every session shares one TimerQueue and
 * one armed Node timer, and each still gets its own delays exactly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { hold } from '../../src/tarpit/hold.js';
import { TimerQueue } from '../../src/tarpit/timer-queue.js';
import type { HoldSummary } from '../../src/tarpit/types.js';
import type { TarpitProfile } from '../../src/policy/spec.js';

const N = 200;
// Each session lives 5 delays, and the check that all N are held at once needs every connect
// accepted within that: 3 s leaves a loaded CI box room for 200 loopback connects.
const DELAY = 0.6;
const PROFILE: TarpitProfile = {
  name: 'load',
  delays: { banner: DELAY, helo: DELAY, mail: DELAY, rcpt: DELAY, data: DELAY },
  end: { kind: 'allowlist' },
};

interface ClientResult {
  /** [code, ms since the previous command (or the connect call)] per reply. */
  readonly replies: Array<[number, number]>;
  readonly closed: boolean;
}

/**
 * An event-driven client (no timers of its own, so the process's timer count
 * shows only the server's): connect, then EHLO, MAIL, RCPT, DATA and, after
 * DATA's end reply, QUIT, each sent when the previous reply is complete.
 */
function walk(port: number, i: number): Promise<ClientResult> {
  const script = ['EHLO c' + i + '.example', `MAIL FROM:<s${i}@example.org>`, `RCPT TO:<r${i}@example.net>`, 'DATA', 'QUIT'];
  return new Promise((resolve) => {
    const replies: Array<[number, number]> = [];
    let buf = '';
    // From before the connect: the server may accept (and start the banner wait) before our 'connect' event runs.
    let mark = performance.now();
    const socket: Socket = connect({ host: '127.0.0.1', port });
    socket.setEncoding('latin1');
    socket.on('error', () => undefined);
    socket.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\r\n'); nl !== -1; nl = buf.indexOf('\r\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (line[3] === '-') continue;
        const now = performance.now();
        replies.push([Number(line.slice(0, 3)), now - mark]);
        mark = now;
        const next = script[replies.length - 1];
        if (next !== undefined) socket.write(next + '\r\n');
      }
    });
    socket.on('close', () => resolve({ replies, closed: true }));
  });
}

test(`${N} concurrent holds with ${DELAY} s delays all complete correctly on one armed timer`, async (t) => {
  const timers = new TimerQueue();
  const summaries: HoldSummary[] = [];
  const sockets: Socket[] = [];
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    sockets.push(socket);
    hold(socket, {
      hostname: 'mx.test',
      profile: PROFILE,
      timers,
      observer: {
        onSurvived: () => ({ code: 451, enhanced: '4.7.1', text: 'Try again later' }),
        onClose: (s) => summaries.push(s),
      },
    });
  });
  server.listen({ port: 0, host: '127.0.0.1', backlog: 1024 });
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
    timers.clear();
  });
  const port = (server.address() as AddressInfo).port;
  const timeoutsBefore = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

  const start = performance.now();
  const clients = Array.from({ length: N }, (_, i) => walk(port, i));

  // Sample until every session is in: each live session always has exactly one
  // queue entry (its held reply, its idle deadline or its close grace), and the
  // first can finish only after 5 delays.
  let mostHeld = 0;
  let mostTimeouts = 0;
  await new Promise<void>((resolve) => {
    const sample = (): void => {
      mostHeld = Math.max(mostHeld, timers.size);
      mostTimeouts = Math.max(mostTimeouts, process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length);
      if (mostHeld === N || performance.now() - start > 5 * DELAY * 1000) resolve();
      else setImmediate(sample);
    };
    sample();
  });

  const results = await Promise.all(clients);
  const elapsed = performance.now() - start;

  assert.equal(mostHeld, N, 'every session had its entry in the one queue at once');
  // Our sampler runs on setImmediate: the only Node timer the holds add is the queue's one.
  assert.ok(mostTimeouts <= timeoutsBefore + 1, `${mostTimeouts} Node timers while holding ${N} sockets (before: ${timeoutsBefore})`);
  // One after another would take N × 5 delays (10 minutes); concurrently about 5 delays, plus whatever a busy machine adds.
  assert.ok(elapsed < 60_000, `took ${elapsed.toFixed(0)} ms: the holds ran concurrently, not one after another`);

  for (const [i, r] of results.entries()) {
    assert.deepEqual(
      r.replies.map(([code]) => code),
      [220, 250, 250, 250, 451, 221],
      `client ${i}`,
    );
    // Every reply up to the end waited its delay; QUIT's 221 after it is answered at once.
    for (const [code, ms] of r.replies.slice(0, 5)) assert.ok(ms >= DELAY * 1000, `client ${i}: ${code} after ${ms.toFixed(1)} ms`);
  }
  await new Promise<void>((resolve) => {
    const check = (): void => (summaries.length === N ? resolve() : void setImmediate(check));
    check();
  });
  assert.equal(summaries.length, N);
  for (const s of summaries) {
    assert.equal(s.outcome, 'survived');
    assert.equal(s.stage, 'data');
    assert.ok(s.heldSeconds >= 5 * DELAY, `held ${s.heldSeconds}`);
  }
  assert.equal(timers.size, 0);
  assert.equal(timers.armedDeadline, undefined);
});
