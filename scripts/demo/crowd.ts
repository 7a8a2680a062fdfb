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
    if (!replies.closed) send('QUIT');
  } catch {
    ending = gaveUp ? 'gave up' : 'refused'; // the server closed on us (421) or we hung up
  }
  clearTimeout(patience);
  socket.end();
  return { ending, replies: replies.seen, seconds: (performance.now() - started) / 1000 };
}

/**
 * A patient sender: waits as long as RFC 5321 asks and, told 4xx (try again
 * later), comes back once with `retry`, here after one second (a real MTA's
 * queue waits minutes).
 */
export async function patiently(port: number, first: Visit, retry: Visit): Promise<VisitResult[]> {
  const result = await visit(port, first);
  if (result.ending !== 'refused' || !result.replies.at(-1)?.startsWith('4')) return [result];
  await new Promise((r) => setTimeout(r, 1000));
  return [result, await visit(port, retry)];
}
