/**
 * The demo's crowd: SMTP clients on raw sockets, each from its own loopback
 * address (Linux lets a socket bind any 127.x.y.z), behaving as the senders a
 * mail server meets on port 25 do. Each reports only what it saw itself: the
 * replies it read and how its session ended.
 */
import { connect, type Socket } from 'node:net';

export type Style =
  /** Waits for each reply before the next command, like a real MTA. */
  | 'polite'
  /** Talks before the banner: bots in a hurry do, real MTAs never. */
  | 'pregreet'
  /** Waits for the banner, then sends every command in one write without waiting for replies. */
  | 'pipeline';

export interface Visit {
  readonly address: string;
  readonly style: Style;
  /** Seconds from the connect until the client gives up and closes. */
  readonly patience: number;
  readonly from: string;
  readonly to: readonly string[];
}

export type Ending = 'relayed' | 'refused' | 'gave up';

export interface VisitResult {
  readonly ending: Ending;
  /** First line of every reply read, in order. */
  readonly replies: readonly string[];
  readonly seconds: number;
}

/** Reads whole replies off a socket; `next()` rejects once the socket is closed. */
class Replies {
  private buffer = '';
  private lines: string[] = [];
  private waiting: (() => void) | undefined;
  closed = false;
  readonly seen: string[] = [];

  constructor(socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.waiting?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
  }

  async next(): Promise<{ code: number; line: string }> {
    for (;;) {
      const nl = this.buffer.indexOf('\r\n');
      if (nl !== -1) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 2);
        this.lines.push(line);
        if (line[3] === '-') continue; // a multi-line reply goes on
        const first = this.lines[0] ?? line;
        this.lines = [];
        this.seen.push(first);
        return { code: Number(line.slice(0, 3)), line: first };
      }
      if (this.closed) throw new Error('closed');
      await new Promise<void>((resolve) => (this.waiting = resolve));
    }
  }
}

const BODY = (from: string) => `From: <${from}>\r\nSubject: smtp-tarpit demo\r\n\r\nHello from ${from}.\r\n.\r\n`;

/** One SMTP session, as `visit.style` plays it, until it is relayed, refused or the client's patience runs out. */
export async function visit(port: number, v: Visit): Promise<VisitResult> {
  const started = performance.now();
  const socket = connect({ host: '127.0.0.1', port, localAddress: v.address });
  socket.on('error', () => undefined);
  const replies = new Replies(socket);
  let gaveUp = false;
  const patience = setTimeout(() => {
    gaveUp = true;
    socket.destroy();
  }, v.patience * 1000);
  const send = (...lines: string[]) => socket.write(lines.map((l) => `${l}\r\n`).join(''));
  const envelope = [`MAIL FROM:<${v.from}>`, ...v.to.map((r) => `RCPT TO:<${r}>`)];

  const converse = async (): Promise<Ending> => {
    if (v.style === 'pregreet') send('EHLO bot.demo.example');
    if ((await replies.next()).code !== 220) return 'refused';
    if (v.style === 'pipeline') {
      send('EHLO bot.demo.example', ...envelope, 'DATA');
      for (let i = 0; i < envelope.length + 1; i++) if ((await replies.next()).code >= 400) return 'refused';
      if ((await replies.next()).code !== 354) return 'refused';
      socket.write(BODY(v.from));
      return (await replies.next()).code === 250 ? 'relayed' : 'refused';
    }
    if (v.style === 'polite') send('EHLO mta.demo.example');
    if ((await replies.next()).code !== 250) return 'refused';
    let accepted = 0;
    for (const command of envelope) {
      send(command);
      const { code } = await replies.next();
      if (command.startsWith('MAIL') && code !== 250) return 'refused';
      if (code === 250) accepted++;
    }
    if (accepted < 2) return 'refused'; // MAIL's 250 plus at least one recipient's
    send('DATA');
    if ((await replies.next()).code !== 354) return 'refused';
    socket.write(BODY(v.from));
    return (await replies.next()).code === 250 ? 'relayed' : 'refused';
  };

  let ending: Ending;
  try {
    ending = await converse();
  } catch {
    ending = gaveUp ? 'gave up' : 'refused'; // the server closed on us (421) or we hung up
  }
  if (ending !== 'gave up' && !replies.closed) {
    // As an MTA ends a session, deferred or not: QUIT, and read the 221 (RFC 5321 §4.1.1.10).
    send('QUIT');
    await replies.next().catch(() => undefined);
  }
  clearTimeout(patience);
  socket.end();
  return { ending, replies: replies.seen, seconds: (performance.now() - started) / 1000 };
}

/** A sender that queues its message and retries after a deferral (4xx), as MTAs do (RFC 5321 §4.5.4.1). */
export interface QueuedSender {
  /** Each try's visit, in order; a pool moves on to another address of its own, so the addresses may differ. */
  readonly tries: readonly Visit[];
  /** Seconds it waits after a deferral before the next try (Postfix: minimal_backoff_time, 300 s; scaled down here). */
  readonly retryAfter: number;
}

export interface Delivery {
  /** Every try, in order. */
  readonly tries: readonly VisitResult[];
  /** Seconds from the first connect to the backend's 250 for the message; undefined when it was never delivered. */
  readonly delivered: number | undefined;
}

/**
 * Sends once, and after each 4xx (try again later) waits `retryAfter` and
 * tries again with the next visit, until relayed, refused for good (5xx) or
 * out of tries. The time to delivery is what a legitimate sender pays for
 * the tarpit's holds.
 */
export async function untilDelivered(port: number, sender: QueuedSender): Promise<Delivery> {
  const started = performance.now();
  const tries: VisitResult[] = [];
  for (const [i, v] of sender.tries.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, sender.retryAfter * 1000));
    const result = await visit(port, v);
    tries.push(result);
    if (result.ending === 'relayed') return { tries, delivered: (performance.now() - started) / 1000 };
    if (!deferred(result)) break;
  }
  return { tries, delivered: undefined };
}

/** The try ended in a temporary failure (4xx), after which an MTA retries; a 221 to its QUIT says nothing. */
function deferred(result: VisitResult): boolean {
  return result.ending === 'refused' && result.replies.filter((r) => !r.startsWith('221')).at(-1)?.startsWith('4') === true;
}
