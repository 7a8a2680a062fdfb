/**
 * A plain loopback client for the hold's tests (hold.test.ts, hold-profile.test.ts):
 * no SMTP parsing, so a test can see exactly which bytes arrived and when.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

/** Polls `cond` until it holds; throws after `timeoutMs` (generous: a loaded CI box must not reach it), naming `what`. */
export async function until(cond: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    // Fine-grained: the profile tests time replies with it.
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** A raw client that keeps what it receives and when each chunk arrived. */
export class Raw {
  text = '';
  closed = false;
  /** performance.now() and byte count of each chunk, in order. */
  readonly chunks: { at: number; bytes: number }[] = [];
  private constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.chunks.push({ at: performance.now(), bytes: d.length });
      this.text += d;
    });
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }
  static async connect(port: number): Promise<Raw> {
    const socket = connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    return new Raw(socket);
  }
  write(s: string | Buffer): void {
    this.socket.write(s);
  }
  async waitFor(re: RegExp, timeoutMs = 15_000): Promise<void> {
    await until(() => re.test(this.text), timeoutMs, `reply ${re} (have ${JSON.stringify(this.text)})`);
  }
  async waitClosed(timeoutMs = 15_000): Promise<void> {
    await until(() => this.closed, timeoutMs, 'server close');
  }
  /** Sends `line` and resolves with the ms until the reply's last line (a line with a space after the code) is in. */
  async timed(line: string, reply: RegExp): Promise<number> {
    const from = this.text.length;
    const start = performance.now();
    this.socket.write(`${line}\r\n`);
    await until(() => reply.test(this.text.slice(from)), undefined, `reply to ${line} (have ${JSON.stringify(this.text.slice(from))})`);
    return performance.now() - start;
  }
}
