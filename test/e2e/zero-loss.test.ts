/**
 * docs/design.md §4.1, no message lost: 2,000 messages from 20 parallel client sessions go through the proxy
 * while the backend is restarted twice. Every message the client saw 250 for is at the backend exactly
 * once; every other one got a 4xx (never a 5xx, never a silent close, never a hang).
 *
 * Runs twice: against a real Postfix (needs root and the postfix package; skipped locally without them,
 * a failure in CI) and against the in-process smtp-server backend (runs everywhere, restarts are instant
 * close + re-listen, so it covers the proxy's side even on a bare dev machine).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { canRunPostfix, startPostfix } from '../helpers/postfix.js';
import type { TestContext } from '../helpers/require-tool.js';
import { startBackend, type TestBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody, type TestReply } from '../helpers/smtp-client.js';
import { startProxy } from '../helpers/with-proxy.js';

const CLIENTS = 20;
const PER_CLIENT = 100;
/** Restarts start when this share of all messages has an outcome (the second also waits for the first). */
const RESTART_AT = [0.3, 0.65] as const;
/** After a temporary failure a client pauses, doubling per failure in a row (like an eager MTA's retry),
 * so a slow restart does not burn the whole load on 451s. */
const BACKOFF_MS = { min: 200, max: 2_000 };

const PROXY_CONFIG = {
  backend: {
    poolSize: 30,
    warm: 5,
    acquireTimeout: 5,
    timeouts: { connect: 2, greeting: 5, command: 5, dataInit: 5, dataBlock: 5, dataDone: 10 },
  },
};

/** The backend under test, seen from the load driver. */
interface LoadBackend {
  readonly port: number;
  restart(): Promise<void>;
  /** token → how many distinct backend acceptances (queue ids) carry it, and how many stored copies. */
  delivered(): Promise<Map<string, { accepted: number; copies: number }>>;
}

type Outcome = 'ok' | 'temp' | 'perm' | 'dropped' | 'hang';

interface LoadResult {
  readonly outcomes: Map<string, { outcome: Outcome; at: string; reply: string }>;
  readonly restarts: Array<{ startedAt: number; tookMs: number }>;
  readonly elapsedMs: number;
}

const TOKEN_RE = /^Subject: (zl-[\w-]+)\r?$/m;

/** Drives the load and the restarts; never throws for SMTP outcomes, it records them. */
async function runLoad(t: TestContext, backend: LoadBackend, proxyPort: number, run: string): Promise<LoadResult> {
  const total = CLIENTS * PER_CLIENT;
  const outcomes = new Map<string, { outcome: Outcome; at: string; reply: string }>();
  const restarts: Array<{ startedAt: number; tookMs: number }> = [];
  const started = Date.now();
  let finished = false;

  const record = (token: string, outcome: Outcome, at: string, reply: string): void => {
    outcomes.set(token, { outcome, at, reply });
  };

  const client = async (c: number): Promise<void> => {
    const localAddress = `127.0.6.${c + 1}`;
    const rcpt = c % 2 === 0 ? 'alice@local.test' : 'bob@local.test';
    let session: SmtpClient | undefined;
    let failuresInARow = 0;
    try {
      for (let m = 0; m < PER_CLIENT && !finished; m++) {
        const token = `zl-${run}-c${c}-m${m}`;
        try {
          if (!session || session.closed) {
            session?.destroy();
            session = await SmtpClient.open({ port: proxyPort, localAddress, timeout: 30_000 });
            const ehlo = await session.command(`EHLO load${c}.example`);
            if (ehlo.code !== 250) throw new Error(`EHLO answered ${ehlo.lines.join(' | ')}`);
          }
          const s = session;
          const step = async (at: string, line: string | undefined, want: number): Promise<TestReply | undefined> => {
            const reply = line === undefined ? await s.read() : await s.command(line);
            if (reply.code === want) return reply;
            const outcome: Outcome = reply.code >= 400 && reply.code < 500 ? 'temp' : 'perm';
            record(token, outcome, at, reply.lines.join(' | '));
            return undefined;
          };
          if (!(await step('mail', 'MAIL FROM:<load@sender.example>', 250))) continue;
          if (!(await step('rcpt', `RCPT TO:<${rcpt}>`, 250))) continue;
          if (!(await step('data', 'DATA', 354))) continue;
          s.write(wireBody(`From: load@sender.example\nTo: ${rcpt}\nMessage-ID: <${token}@zero-loss.test>\nSubject: ${token}\n\nmessage ${m} of client ${c}\n`));
          s.write('.\r\n');
          const end = await step('dot', undefined, 250);
          if (end) record(token, 'ok', 'dot', end.lines.join(' | '));
        } catch (err) {
          // A read that timed out is a hang; a close with no reply at all is a drop (a 421 comes first).
          const message = err instanceof Error ? err.message : String(err);
          record(token, /no reply within/.test(message) ? 'hang' : 'dropped', 'io', message);
          session?.destroy();
          session = undefined;
        } finally {
          const o = outcomes.get(token);
          if (o?.outcome === 'ok') failuresInARow = 0;
          else if (o) {
            // A 421 closes the session: reconnect for the next message. Otherwise reset and go on.
            if (session && !session.closed) {
              try {
                const rset = await session.command('RSET');
                if (rset.code !== 250) session.destroy();
              } catch {
                session.destroy();
              }
            }
            await sleep(Math.min(BACKOFF_MS.max, BACKOFF_MS.min * 2 ** failuresInARow++));
          }
        }
      }
    } finally {
      await session?.quit();
    }
  };

  const restarter = async (): Promise<void> => {
    let threshold = 0;
    for (const share of RESTART_AT) {
      threshold = Math.max(Math.ceil(total * share), threshold);
      while (outcomes.size < threshold && !finished) await sleep(20);
      if (finished) return;
      const startedAt = Date.now() - started;
      const t0 = Date.now();
      await backend.restart();
      restarts.push({ startedAt, tookMs: Date.now() - t0 });
      t.diagnostic(`restart ${restarts.length} at ${startedAt} ms (${outcomes.size} messages done), took ${Date.now() - t0} ms`);
      // Let some traffic through between the restarts.
      threshold = Math.min(outcomes.size + Math.ceil(total * 0.15), Math.ceil(total * 0.9));
    }
  };

  // A failed restart ends the run at once (clients stop), and fails the test with its own error.
  let restartError: Error | undefined;
  const restarting = restarter().catch((err: unknown) => {
    restartError = err instanceof Error ? err : new Error(String(err));
    finished = true;
  });
  await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
  finished = true;
  await restarting;
  if (restartError !== undefined) throw restartError;
  return { outcomes, restarts, elapsedMs: Date.now() - started };
}

/** Waits until every 250'd message is delivered and the count has been stable for a while. */
async function settle(backend: LoadBackend, okTokens: string[], timeoutMs: number): Promise<Map<string, { accepted: number; copies: number }>> {
  const deadline = Date.now() + timeoutMs;
  let last = -1;
  let stableSince = Date.now();
  for (;;) {
    const delivered = await backend.delivered();
    const size = [...delivered.values()].reduce((n, d) => n + d.copies, 0);
    if (size !== last) {
      last = size;
      stableSince = Date.now();
    }
    const allThere = okTokens.every((tok) => delivered.has(tok));
    if ((allThere && Date.now() - stableSince >= 2_000) || Date.now() > deadline) return delivered;
    await sleep(250);
  }
}

async function checkZeroLoss(t: TestContext, backend: LoadBackend, proxyPort: number, run: string): Promise<void> {
  const { outcomes, restarts, elapsedMs } = await runLoad(t, backend, proxyPort, run);
  const byOutcome = (o: Outcome): string[] => [...outcomes].filter(([, v]) => v.outcome === o).map(([k]) => k);
  const ok = byOutcome('ok');
  const temp = byOutcome('temp');
  const delivered = await settle(backend, ok, 60_000);

  const missing = ok.filter((tok) => !delivered.has(tok));
  const duplicates = [...delivered].filter(([, d]) => d.accepted > 1).map(([k]) => k);
  const redelivered = [...delivered].filter(([, d]) => d.copies > d.accepted).map(([k]) => k);
  const tempDelivered = temp.filter((tok) => delivered.has(tok));
  const unknown = [...delivered.keys()].filter((tok) => tok.includes(run) && !outcomes.has(tok));
  const tempWhere = new Map<string, number>();
  for (const tok of temp) {
    const o = outcomes.get(tok)!;
    const key = `${o.at} ${o.reply.slice(0, 9)}`;
    tempWhere.set(key, (tempWhere.get(key) ?? 0) + 1);
  }
  t.diagnostic(
    `sent ${outcomes.size} in ${elapsedMs} ms; 250: ${ok.length}; 4xx: ${temp.length}; 5xx: ${byOutcome('perm').length}; ` +
      `dropped: ${byOutcome('dropped').length}; hangs: ${byOutcome('hang').length}; delivered: ${delivered.size}; ` +
      `missing 250s: ${missing.length}; duplicates: ${duplicates.length}; backend-local redeliveries: ${redelivered.length}; ` +
      `4xx yet delivered: ${tempDelivered.length}`,
  );
  t.diagnostic(`4xx by step and reply: ${JSON.stringify(Object.fromEntries(tempWhere))}`);
  const sample = (tokens: string[]): string => tokens.slice(0, 5).map((tok) => `${tok}: ${JSON.stringify(outcomes.get(tok) ?? delivered.get(tok))}`).join('; ');
  // Allowed (RFC 1047's window, not ours to close): the backend committed the message, then the restart
  // killed its smtpd before the 250 reached us, so our client got 451 and will send it again. Seen with
  // Postfix: the smtpd that queued such a message logs no "disconnect" line (it was killed mid-session).
  if (tempDelivered.length > 0) t.diagnostic(`4xx yet delivered: ${sample(tempDelivered)}`);

  assert.equal(outcomes.size, CLIENTS * PER_CLIENT, 'every message has an outcome');
  assert.equal(restarts.length, 2, 'the backend was restarted twice during the run');
  assert.deepEqual(byOutcome('perm'), [], `5xx: ${sample(byOutcome('perm'))}`);
  assert.deepEqual(byOutcome('hang'), [], `hangs: ${sample(byOutcome('hang'))}`);
  assert.deepEqual(byOutcome('dropped'), [], `closed without a reply: ${sample(byOutcome('dropped'))}`);
  assert.deepEqual(missing, [], `250 but not delivered: ${sample(missing)}`);
  assert.deepEqual(duplicates, [], `accepted more than once: ${sample(duplicates)}`);
  assert.deepEqual(unknown, [], 'delivered messages nobody sent');
  assert.ok(temp.length > 0, 'the restarts were felt (some 4xx)');
  assert.ok(ok.length >= outcomes.size / 2, `most messages got through (${ok.length})`);
}

test('no message lost: 2,000 messages, 20 sessions, real Postfix restarted twice', { timeout: 240_000 }, async (t) => {
  if (!canRunPostfix(t)) return;
  const postfix = await startPostfix({ xclientHosts: '127.0.0.1' });
  const running: { proxy?: Awaited<ReturnType<typeof startProxy>> } = {};
  // The proxy first, then its backend.
  t.after(async () => {
    await running.proxy?.stop();
    await postfix.stop();
  });
  const proxy = (running.proxy = await startProxy({ backendPort: postfix.port, config: PROXY_CONFIG }));
  const run = `pf${Date.now().toString(36)}`;

  const backend: LoadBackend = {
    port: postfix.port,
    restart: () => postfix.restart(),
    async delivered() {
      const out = new Map<string, { accepted: number; copies: number }>();
      const ids = new Map<string, Set<string>>();
      for (const user of ['alice', 'bob']) {
        for (const text of await postfix.readMailbox(user)) {
          const token = TOKEN_RE.exec(text)?.[1];
          if (token === undefined) continue;
          // The queue id of Postfix's own Received header: one id per time Postfix accepted the message.
          const id = /^\s+by mx\.local\.test \(Postfix\) with E?SMTP id ([0-9A-F]+)/m.exec(text)?.[1] ?? `?${ids.size}`;
          const set = ids.get(token) ?? new Set<string>();
          set.add(id);
          ids.set(token, set);
          const d = out.get(token) ?? { accepted: 0, copies: 0 };
          d.copies++;
          d.accepted = set.size;
          out.set(token, d);
        }
      }
      return out;
    },
  };
  await checkZeroLoss(t, backend, proxy.port, run);
});

test('no message lost: 2,000 messages, 20 sessions, in-process backend restarted twice', { timeout: 120_000 }, async (t) => {
  let current: TestBackend = await startBackend();
  const port = current.port;
  const received: Array<{ body: Buffer; connectionId: string }> = [];
  let generation = 0;
  const harvest = (b: TestBackend, gen: number): void => {
    for (const m of b.messages) received.push({ body: m.body, connectionId: `${gen}/${m.connectionId}` });
  };
  const running: { proxy?: Awaited<ReturnType<typeof startProxy>> } = {};
  t.after(async () => {
    await running.proxy?.stop();
    await current.close();
  });
  const proxy = (running.proxy = await startProxy({ backendPort: port, config: PROXY_CONFIG }));
  const run = `ip${Date.now().toString(36)}`;

  const backend: LoadBackend = {
    port,
    async restart() {
      const old = current;
      await old.close();
      harvest(old, generation++);
      // Down for a moment, as a real restart is.
      await sleep(1_000);
      current = await startBackend({}, port);
    },
    delivered() {
      const all = [...received, ...current.messages.map((m) => ({ body: m.body, connectionId: `${generation}/${m.connectionId}` }))];
      const out = new Map<string, { accepted: number; copies: number }>();
      for (const m of all) {
        const token = TOKEN_RE.exec(m.body.toString('utf8'))?.[1];
        if (token === undefined) continue;
        const d = out.get(token) ?? { accepted: 0, copies: 0 };
        d.accepted++;
        d.copies++;
        out.set(token, d);
      }
      return Promise.resolve(out);
    },
  };
  await checkZeroLoss(t, backend, proxy.port, run);
});
