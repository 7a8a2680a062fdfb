/**
 * Issue 4's profile features of the hold, over real loopback sockets:
 * stutter, delays.other, jitter and maxHold.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { endReply, hold, type HoldOptions, type HoldSession } from '../../src/tarpit/hold.js';
import { TimerQueue, type TimerHandle, type TimerTarget } from '../../src/tarpit/timer-queue.js';
import { Raw, until } from './raw-client.js';
import type { HoldEvent, HoldSummary } from '../../src/tarpit/types.js';
import type { TarpitProfile } from '../../src/policy/spec.js';

const END_554: TarpitProfile['end'] = { kind: 'reply', code: 554, text: '5.7.1 Held and refused' };

/**
 * Records the delay of every entry the hold schedules. What a delay was asked
 * for is exact whatever the machine's load; when a reply arrived is not (a busy
 * CI box fires timers late), so upper bounds are checked here, not on the clock.
 */
class RecordingQueue extends TimerQueue {
  readonly scheduled: number[] = [];
  override schedule(target: TimerTarget, delayMs: number): TimerHandle {
    this.scheduled.push(delayMs);
    return super.schedule(target, delayMs);
  }
}

/** Whether `ms` is `want` up to float rounding (0.12 × 1000 and the like). */
function near(ms: number, want: number): boolean {
  return Math.abs(ms - want) < 0.01;
}

function profile(extra: Partial<Omit<TarpitProfile, 'delays'>> & { delays?: Partial<TarpitProfile['delays']> } = {}): TarpitProfile {
  return { name: 'p', end: END_554, ...extra, delays: { banner: 0, helo: 0, mail: 0, rcpt: 0, data: 0, ...extra.delays } };
}

interface Harness {
  readonly port: number;
  readonly timers: RecordingQueue;
  readonly sessions: HoldSession[];
  readonly events: HoldEvent[];
  /** Calls of onSurvived (which answers what the profile's end says). */
  readonly survived: { count: number };
  summary(): Promise<HoldSummary>;
}

async function serve(t: TestContext, options: Partial<HoldOptions> & { profile: TarpitProfile }): Promise<Harness> {
  const timers = new RecordingQueue();
  const sessions: HoldSession[] = [];
  const sockets: Socket[] = [];
  const summaries: HoldSummary[] = [];
  const events: HoldEvent[] = [];
  const survived = { count: 0 };
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    sockets.push(socket);
    sessions.push(
      hold(socket, {
        hostname: 'mx.test',
        ...options,
        timers,
        observer: {
          onEvent: (e) => void events.push(e),
          onSurvived: (session) => {
            survived.count++;
            return endReply(session.profile);
          },
          onClose: (s) => void summaries.push(s),
        },
      }),
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
    timers.clear();
  });
  return {
    port: (server.address() as AddressInfo).port,
    timers,
    sessions,
    events,
    survived,
    async summary() {
      await until(() => summaries.length > 0, undefined, 'summary');
      return summaries[0]!;
    },
  };
}

test('stutter: a one-line reply at 20 B/s arrives byte by byte, ~50 ms apart, on one timer entry, and counts as held time', async (t) => {
  const h = await serve(t, { profile: profile({ stutter: 20 }) });
  const banner = '220 mx.test ESMTP\r\n';
  const c = await Raw.connect(h.port);
  await until(() => c.text.length >= 3);
  // Mid-trickle the session has one entry in the queue: the next byte.
  assert.equal(h.timers.size, 1);
  await c.waitFor(/ESMTP\r\n$/);
  assert.equal(c.text, banner);
  // One tick of 1/20 s per byte after the first: exact, whatever the load.
  assert.deepEqual(h.timers.scheduled.slice(0, banner.length - 1), Array.from({ length: banner.length - 1 }, () => 50));
  // Each byte its own chunk (a busy machine may bunch a few).
  assert.ok(c.chunks.length >= banner.length / 2, `${c.chunks.length} chunks for ${banner.length} bytes`);
  const gaps = c.chunks.slice(1).map((chunk, i) => (chunk.at - c.chunks[i]!.at) / chunk.bytes);
  const sortedGaps = [...gaps].sort((a, b) => a - b);
  const median = sortedGaps[sortedGaps.length >> 1]!;
  // Only lower bounds on the clock: timers never fire early, but a loaded machine fires them late.
  assert.ok(median >= 45, `median gap ${median.toFixed(1)} ms (gaps ${gaps.map((g) => g.toFixed(0)).join(' ')})`);
  const total = c.chunks.at(-1)!.at - c.chunks[0]!.at;
  const expected = ((banner.length - 1) / 20) * 1000;
  assert.ok(total >= expected - 30, `trickle took ${total.toFixed(0)} ms, expected ~${expected} ms`);
  c.socket.write('QUIT\r\n');
  await until(() => c.closed);
  const s = await h.summary();
  assert.equal(s.outcome, 'quit');
  // The trickle is the stage's held time: ~0.9 s at connect, though the banner had no delay.
  assert.ok(s.held.connect! >= 0.85, `held at connect ${s.held.connect}`);
});

test('stutter: the next command is not read before the last byte; talking during the trickle is out of turn', async (t) => {
  const h = await serve(t, { profile: profile({ stutter: 100 }) });
  const c = await Raw.connect(h.port);
  await until(() => c.text.length >= 2);
  c.socket.write('HELO c.example\r\n');
  await c.waitFor(/^220 mx\.test ESMTP\r\n250 mx\.test\r\n$/);
  assert.deepEqual(
    h.events.map((e) => e.kind),
    ['pregreet'],
  );
  // The reply to HELO was trickled too: ~13 bytes at 100 B/s, after the banner's ~19.
  const afterBanner = c.chunks.findIndex((_, i) => c.chunks.slice(0, i + 1).reduce((n, ch) => n + ch.bytes, 0) > 19);
  assert.ok(c.chunks.length - afterBanner >= 10, `HELO reply came in ${c.chunks.length - afterBanner} chunks`);
});

test('stutter: closing mid-trickle finishes the line first, then the closing reply goes out whole', async (t) => {
  const h = await serve(t, { profile: profile({ stutter: 20 }) });
  const c = await Raw.connect(h.port);
  await until(() => c.text.length >= 3);
  h.sessions[0]!.close({ code: 421, enhanced: '4.3.2', text: 'Service shutting down' });
  await until(() => c.closed);
  assert.equal(c.text, '220 mx.test ESMTP\r\n421 4.3.2 Service shutting down\r\n');
  assert.equal(h.timers.size, 0);
});

test('delays.other holds the replies to NOOP, RSET, VRFY, HELP and unknown commands; QUIT goes at once', async (t) => {
  const h = await serve(t, { profile: profile({ delays: { other: 0.12 } }) });
  const c = await Raw.connect(h.port);
  await c.waitFor(/ESMTP\r\n$/);
  // HELO has its own (zero) delay: nothing of 0.12 s is scheduled for it.
  const held = (from: number): number => h.timers.scheduled.slice(from).filter((ms) => near(ms, 120)).length;
  let mark = h.timers.scheduled.length;
  await c.timed('HELO c.example', /^250 /m);
  assert.equal(held(mark), 0, 'HELO not held');
  for (const [line, reply] of [
    ['NOOP', /^250 /m],
    ['RSET', /^250 /m],
    ['VRFY root', /^252 /m],
    ['HELP', /^214 /m],
    ['FOO', /^500 /m],
  ] as const) {
    mark = h.timers.scheduled.length;
    const ms = await c.timed(line, reply);
    assert.equal(held(mark), 1, `${line} held for delays.other`);
    assert.ok(ms >= 115, `${line} answered after ${ms.toFixed(0)} ms`);
  }
  mark = h.timers.scheduled.length;
  await c.timed('QUIT', /^221 /m);
  assert.equal(held(mark), 0, 'QUIT not held');
  const s = await h.summary();
  assert.equal(s.outcome, 'quit');
});

test('jitter: each delay is multiplied by a factor in [1 - jitter, 1 + jitter] drawn from the random source', async (t) => {
  let draw = 0;
  const h = await serve(t, { profile: profile({ delays: { banner: 0.2 }, jitter: 0.5 }), random: () => draw });
  const times: number[] = [];
  const banners: number[] = [];
  for (const r of [0, 0.999]) {
    draw = r;
    const mark = h.timers.scheduled.length;
    const start = performance.now();
    const c = await Raw.connect(h.port);
    await c.waitFor(/ESMTP\r\n$/);
    times.push(performance.now() - start);
    // The connection's first entry is its banner delay.
    banners.push(h.timers.scheduled[mark]!);
    c.socket.destroy();
  }
  // 0.2 s × 0.5 and 0.2 s × ~1.5: exact in what was scheduled, and never early on the clock.
  assert.ok(near(banners[0]!, 100), `lowest draw: banner scheduled after ${banners[0]} ms`);
  assert.ok(banners[1]! > 299 && banners[1]! < 300, `highest draw: banner scheduled after ${banners[1]} ms`);
  assert.ok(times[0]! >= 95, `lowest draw: banner after ${times[0]!.toFixed(0)} ms`);
  assert.ok(times[1]! >= 295, `highest draw: banner after ${times[1]!.toFixed(0)} ms`);
});

test('maxHold: a client in a long wait gets the profile’s end reply when the budget runs out, is not allowlisted, and may still QUIT', async (t) => {
  // The HELO delay is far above the bound below, so "the budget ended it" cannot be confused with the delay on a loaded machine.
  const h = await serve(t, { profile: profile({ delays: { helo: 60 }, maxHold: 0.3, end: { kind: 'allowlist' } }), limits: { endGrace: 60 } });
  const start = performance.now();
  const c = await Raw.connect(h.port);
  await c.waitFor(/ESMTP\r\n$/);
  c.socket.write('HELO c.example\r\n');
  await c.waitFor(/\r\n451 [^\r]*\r\n$/);
  const elapsed = performance.now() - start;
  assert.equal(c.text, '220 mx.test ESMTP\r\n451 4.7.1 Service temporarily unavailable, try again later\r\n');
  assert.ok(elapsed >= 295 && elapsed < 15_000, `ended after ${elapsed.toFixed(0)} ms`);
  // A 451 is no licence to close (RFC 5321 §3.8); the end grace is not cut short by the spent maxHold either.
  assert.equal(h.sessions[0]!.closed, false);
  c.socket.write('QUIT\r\n');
  await until(() => c.closed);
  assert.match(c.text, /\r\n451 4\.7\.1 [^\r]*\r\n221 2\.0\.0 Bye\r\n$/);
  const s = await h.summary();
  assert.equal(s.outcome, 'maxHold');
  // Cut short is not sat out: no onSurvived, so no allowlisting.
  assert.equal(h.survived.count, 0);
  assert.equal(h.timers.size, 0);
});

test('maxHold also ends a client idle on its turn, and one that keeps sending commands answered at once (which then meets the command cap after the end)', async (t) => {
  const h = await serve(t, { profile: profile({ maxHold: 0.25 }), limits: { idleTimeout: 30, endGrace: 60 } });
  const idle = await Raw.connect(h.port);
  await idle.waitFor(/ESMTP\r\n$/);
  await idle.waitFor(/\r\n554 [^\r]*\r\n$/);
  idle.socket.write('QUIT\r\n');
  await until(() => idle.closed);
  assert.equal(idle.text, '220 mx.test ESMTP\r\n554 5.7.1 Held and refused\r\n221 2.0.0 Bye\r\n');

  // Its own budget, long enough that a loaded machine still gets a NOOP answered before it runs out.
  const h2 = await serve(t, { profile: profile({ maxHold: 2.5 }), limits: { idleTimeout: 30, endGrace: 60 } });
  const chatty = await Raw.connect(h2.port);
  await chatty.waitFor(/ESMTP\r\n$/);
  const start = performance.now();
  while (!chatty.closed && performance.now() - start < 20_000) {
    chatty.socket.write('NOOP\r\n');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.ok(chatty.closed, 'closed within 20 s');
  assert.match(chatty.text, /250 2\.0\.0 Ok\r\n554 5\.7\.1 Held and refused\r\n(250 2\.0\.0 Ok\r\n){10}421 4\.7\.0 mx\.test Error: too many commands\r\n$/);
});
