/**
 * A strict little SMTP client for tests: every reply it reads is checked for
 * grammar (RFC 5321 §4.2: three digits, '-' or ' ', at most 512 octets a line)
 * and, when an enhanced code is present, that its class matches the reply's
 * first digit (RFC 3463 §2). A reply that breaks these fails the test.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';

export interface TestReply {
  readonly code: number;
  readonly enhanced?: string | undefined;
  /** Text of all lines, joined with \n, enhanced codes removed. */
  readonly text: string;
  readonly lines: readonly string[];
}

export interface SmtpClientOptions {
  readonly host?: string;
  readonly port: number;
  /** Play a different client: any 127.x.y.z can be bound on Linux. */
  readonly localAddress?: string;
  /** ms per reply */
  readonly timeout?: number;
}

export class SmtpClient {
  private buffer = '';
  private readonly waiters: Array<() => void> = [];
  closed = false;

  private constructor(
    readonly socket: Socket,
    private readonly timeout: number,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static async connect(options: SmtpClientOptions): Promise<SmtpClient> {
    const socket = connect({ host: options.host ?? '127.0.0.1', port: options.port, localAddress: options.localAddress });
    await once(socket, 'connect');
    return new SmtpClient(socket, options.timeout ?? 10_000);
  }

  /** Connects and reads the greeting, which must be 220. */
  static async open(options: SmtpClientOptions): Promise<SmtpClient> {
    const client = await SmtpClient.connect(options);
    const greeting = await client.read();
    if (greeting.code !== 220) throw new Error(`expected 220 greeting, got ${greeting.lines.join(' | ')}`);
    return client;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Reads one whole reply. */
  async read(): Promise<TestReply> {
    const deadline = Date.now() + this.timeout;
    const lines: string[] = [];
    for (;;) {
      const nl = this.buffer.indexOf('\r\n');
      if (nl !== -1) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 2);
        checkLine(line);
        lines.push(line);
        if (line[3] === ' ' || line.length === 3) return parse(lines);
        continue;
      }
      if (this.closed) throw new Error(`connection closed while waiting for a reply (got ${JSON.stringify(lines.concat(this.buffer))})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply within ${this.timeout} ms (got ${JSON.stringify(lines.concat(this.buffer))})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<TestReply> {
    this.write(line + '\r\n');
    return this.read();
  }

  /** EHLO, then MAIL, RCPTs, DATA and the body; returns every reply in order. */
  async send(from: string, to: readonly string[], body: string | Buffer): Promise<{ mail: TestReply; rcpt: TestReply[]; data?: TestReply; end?: TestReply }> {
    const mail = await this.command(`MAIL FROM:<${from}>`);
    const rcpt: TestReply[] = [];
    for (const r of to) rcpt.push(await this.command(`RCPT TO:<${r}>`));
    if (mail.code !== 250 || !rcpt.some((r) => r.code === 250)) return { mail, rcpt };
    const data = await this.command('DATA');
    if (data.code !== 354) return { mail, rcpt, data };
    this.write(body);
    this.write('.\r\n');
    const end = await this.read();
    return { mail, rcpt, data, end };
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    try {
      await this.command('QUIT');
    } catch {
      // the server may close first
    }
    this.socket.destroy();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Resolves when the server closes the connection. */
  async waitClosed(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() > deadline) throw new Error('connection still open');
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

function checkLine(line: string): void {
  if (line.length + 2 > 512) throw new Error(`reply line longer than 512 octets: ${line.slice(0, 80)}…`);
  if (!/^[2-5][0-9][0-9]([ -]|$)/.test(line)) throw new Error(`malformed reply line: ${JSON.stringify(line)}`);
  const enhanced = /^\d{3}[ -]([245])\.\d{1,3}\.\d{1,3}( |$)/.exec(line);
  if (enhanced && enhanced[1] !== line[0]) throw new Error(`enhanced code class does not match reply: ${line}`);
}

function parse(lines: string[]): TestReply {
  const code = Number(lines[0]?.slice(0, 3));
  let enhanced: string | undefined;
  const text = lines
    .map((l) => {
      const rest = l.slice(4);
      const m = /^([245]\.\d{1,3}\.\d{1,3}) ?/.exec(rest);
      if (m) {
        enhanced ??= m[1];
        return rest.slice(m[0].length);
      }
      return rest;
    })
    .join('\n');
  return { code, enhanced, text, lines };
}

/**
 * Connects from `localAddress`, writes `early` (a client talking before the
 * banner) if given, and reads the first reply, timing it from the connect.
 */
export async function greet(port: number, localAddress: string, early?: string): Promise<{ client: SmtpClient; banner: TestReply; seconds: number }> {
  const client = await SmtpClient.connect({ port, localAddress, timeout: 5000 });
  const start = performance.now();
  if (early !== undefined) client.write(early);
  const banner = await client.read();
  return { client, banner, seconds: (performance.now() - start) / 1000 };
}

/** A message in wire form: CRLF line ends and dot-stuffing, ready to follow DATA. */
export function wireBody(text: string): string {
  const crlf = text.replace(/\r?\n/g, '\r\n');
  const ended = crlf.endsWith('\r\n') ? crlf : crlf + '\r\n';
  return ended.replace(/^\./gm, '..');
}
