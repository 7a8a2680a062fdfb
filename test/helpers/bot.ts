/**
 * A spam-bot simulator for tarpit tests: a raw socket that plays one of the
 * behaviours bots show in the field (docs/design.md §2) and hangs up once its
 * patience — counted from the connect, not per reply — runs out. It never
 * retries: what a bot does not get through in one session is lost.
 */
import { connect } from 'node:net';

export type BotStyle =
  /** Waits for each reply before the next command, like an MTA. */
  | 'polite'
  /** Sends EHLO and MAIL the moment it connects, before the banner. */
  | 'pregreet'
  /** Waits for the banner, then sends EHLO, MAIL, RCPT and DATA in one write without waiting. */
  | 'pipeline';

export interface BotOptions {
  readonly port: number;
  readonly localAddress: string;
  readonly style: BotStyle;
  /** ms from the connect until it gives up and closes. */
  readonly patienceMs: number;
}

export interface BotResult {
  /** Codes of the complete replies it read, in order. */
  readonly codes: number[];
  /** True when it closed first (gave up); false when the server closed. */
  readonly gaveUp: boolean;
  /** ms from the connect to the close. */
  readonly ms: number;
}

const COMMANDS = ['EHLO bot.example', 'MAIL FROM:<bot@example.org>', 'RCPT TO:<victim@example.net>', 'DATA'];
const BODY = 'Subject: cheap pills\r\n\r\nbuy now\r\n.\r\n';

export async function runBot(options: BotOptions): Promise<BotResult> {
  const socket = connect({ host: '127.0.0.1', port: options.port, localAddress: options.localAddress });
  socket.setEncoding('latin1');
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const started = performance.now();
  return new Promise<BotResult>((resolve) => {
    const codes: number[] = [];
    let buffer = '';
    let gaveUp = false;
    let next = 0;
    const timer = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
    }, options.patienceMs);
    const send = (line: string): void => {
      if (!socket.destroyed) socket.write(line);
    };
    if (options.style === 'pregreet') {
      send(`${COMMANDS[0]}\r\n${COMMANDS[1]}\r\n`);
      next = 2;
    }
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (let nl = buffer.indexOf('\r\n'); nl !== -1; nl = buffer.indexOf('\r\n')) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 2);
        if (line[3] === '-') continue;
        const code = Number(line.slice(0, 3));
        codes.push(code);
        onReply(code, codes.length === 1);
      }
    });
    const onReply = (code: number, banner: boolean): void => {
      if (options.style === 'pipeline' && banner) {
        send(COMMANDS.map((c) => `${c}\r\n`).join(''));
        next = COMMANDS.length;
        return;
      }
      if (options.style !== 'polite') return;
      if (code === 354) send(BODY);
      else if (next < COMMANDS.length && code < 400) send(`${COMMANDS[next++]}\r\n`);
    };
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ codes, gaveUp, ms: performance.now() - started });
    });
  });
}
