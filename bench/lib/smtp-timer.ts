/**
 * A minimal sequential SMTP client for the latency figure: one message per
 * connection, timed from connect() to the 250 after the final dot. QUIT and
 * the close are not timed, but are awaited so runs never overlap.
 */
import { connect, type Socket } from 'node:net';

export interface TimedSendOptions {
  readonly host: string;
  readonly port: number;
  readonly helo: string;
  readonly from: string;
  readonly to: string;
  /** The message, CRLF line endings, no terminating dot, no dot-stuffing needed. */
  readonly message: string;
  readonly timeoutMs: number;
}

/** Milliseconds from connect to the final 250; throws on any other reply or timeout. */
export function timedSend(o: TimedSendOptions): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const started = performance.now();
    const socket: Socket = connect({ host: o.host, port: o.port, noDelay: true });
    let elapsed: number | undefined;
    let failed: Error | undefined;
    let buffered = '';
    let lines: string[] = [];
    // Each step: the reply code expected, then what to send next.
    const steps: Array<[number, () => void]> = [
      [220, () => socket.write(`EHLO ${o.helo}\r\n`)],
      [250, () => socket.write(`MAIL FROM:<${o.from}>\r\n`)],
      [250, () => socket.write(`RCPT TO:<${o.to}>\r\n`)],
      [250, () => socket.write('DATA\r\n')],
      [354, () => socket.write(`${o.message}\r\n.\r\n`)],
      [250, () => {
        elapsed = performance.now() - started;
        socket.write('QUIT\r\n');
      }],
      [221, () => socket.end()],
    ];
    const timer = setTimeout(() => fail(new Error(`no answer within ${o.timeoutMs} ms (step ${7 - steps.length})`)), o.timeoutMs);
    const fail = (err: Error): void => {
      failed ??= err;
      socket.destroy();
    };
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      for (let lf = buffered.indexOf('\n'); lf !== -1; lf = buffered.indexOf('\n')) {
        const line = buffered.slice(0, lf).replace(/\r$/, '');
        buffered = buffered.slice(lf + 1);
        lines.push(line);
        if (line.charAt(3) === '-') continue;
        const code = Number(line.slice(0, 3));
        const reply = lines.join(' | ');
        lines = [];
        const step = steps.shift();
        if (!step) return fail(new Error(`unexpected reply after QUIT: ${reply}`));
        if (code !== step[0]) return fail(new Error(`expected ${step[0]}, got: ${reply}`));
        step[1]();
      }
    });
    socket.on('error', (err) => fail(err));
    socket.on('close', () => {
      clearTimeout(timer);
      if (failed) reject(failed);
      else if (elapsed === undefined) reject(new Error('connection closed before the final 250'));
      else resolve(elapsed);
    });
  });
}

/** A ~1 KB message with CRLF line endings. */
export function smallMessage(from: string, to: string, bytes = 1000): string {
  const head = [`From: <${from}>`, `To: <${to}>`, 'Subject: relay bench', 'Message-ID: <bench@client.bench>', ''];
  const body: string[] = [];
  let size = 0;
  while (size < bytes) {
    const line = 'La la la la la la la la la la la la la la la la la la la la la la la la la la la.';
    body.push(line);
    size += line.length + 2;
  }
  return [...head, ...body].join('\r\n');
}
