/**
 * The hold's test harness over real loopback sockets (hold.test.ts,
 * hold-ending.test.ts): a net.Server hands each accepted (paused) socket to
 * hold() with an injected TimerQueue; clients are plain net.connect sockets.
 */
import type { TestContext } from 'node:test';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { hold, type HoldOptions, type HoldSession } from '../../src/tarpit/hold.js';
import { TimerQueue } from '../../src/tarpit/timer-queue.js';
import { until } from './raw-client.js';
import type { HoldEvent, HoldObserver, HoldSummary } from '../../src/tarpit/types.js';
import type { TarpitProfile } from '../../src/policy/spec.js';
import { SmtpClient } from '../helpers/smtp-client.js';

export function profile(name: string, delays: Partial<TarpitProfile['delays']> = {}, end: TarpitProfile['end'] = { kind: 'allowlist' }): TarpitProfile {
  return { name, delays: { banner: 0, helo: 0, mail: 0, rcpt: 0, data: 0, ...delays }, end };
}

export const INSTANT = profile('instant');

export interface Harness {
  readonly port: number;
  readonly timers: TimerQueue;
  readonly sessions: HoldSession[];
  readonly serverSockets: Socket[];
  readonly summaries: HoldSummary[];
  readonly events: HoldEvent[];
  /** The i-th session's summary, once it closed. */
  summary(i?: number): Promise<HoldSummary>;
}

export type Setup = Partial<Omit<HoldOptions, 'observer' | 'timers'>> & { observer?: HoldObserver };

/** A listener that holds every connection with `setup`; closed when the test ends. */
export async function serve(t: TestContext, setup: Setup = {}): Promise<Harness> {
  const timers = new TimerQueue();
  const sessions: HoldSession[] = [];
  const serverSockets: Socket[] = [];
  const summaries: HoldSummary[] = [];
  const events: HoldEvent[] = [];
  const server = createServer({ pauseOnConnect: true }, (socket) => {
    serverSockets.push(socket);
    const inner = setup.observer ?? {};
    const observer: HoldObserver = {
      onEvent: (e, s) => {
        events.push(e);
        return inner.onEvent?.(e, s);
      },
      onCommand: inner.onCommand?.bind(inner),
      onSurvived: inner.onSurvived?.bind(inner),
      onError: inner.onError?.bind(inner),
      onClose: (summary) => {
        summaries.push(summary);
        inner.onClose?.(summary);
      },
    };
    sessions.push(hold(socket, { hostname: 'mx.test', profile: INSTANT, ...setup, observer, timers }));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of serverSockets) s.destroy();
    server.close();
    timers.clear();
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    timers,
    sessions,
    serverSockets,
    summaries,
    events,
    async summary(i = 0) {
      await until(() => summaries.length > i, undefined, `summary #${i}`);
      return summaries[i]!;
    },
  };
}

export async function open(port: number): Promise<SmtpClient> {
  return SmtpClient.connect({ port, timeout: 15_000 });
}
