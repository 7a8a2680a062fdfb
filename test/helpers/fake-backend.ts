/**
 * A scripted backend MTA for relay tests: a raw net.Server on 127.0.0.1 that
 * writes exact bytes and behaves like Postfix where it matters (XCLIENT answered
 * with a new 220 greeting, a second XCLIENT refused with 550 5.7.0, docs/platform-notes.md).
 * It records every command line and every DATA body as wire bytes (still
 * dot-stuffed, without the terminating CRLF.CRLF); a body only counts once its
 * terminating dot arrived, as in a real MTA.
 */
import net from 'node:net';
import type { AddressInfo, Socket } from 'node:net';

export interface FakeBackendOptions {
  /** XCLIENT attributes to advertise, or false for no XCLIENT. @default 'NAME ADDR PORT PROTO HELO LOGIN' */
  xclient?: string | false;
  /** Other EHLO keywords. @default ['PIPELINING', 'SIZE 10240000', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'] */
  extensions?: string[];
  /** Greeting bytes. @default '220 fake.test ESMTP\r\n' */
  greeting?: string;
  /** Reply to the first XCLIENT. @default '220 fake.test ESMTP\r\n' */
  xclientReply?: string;
  /** Reply to an EHLO that follows a successful XCLIENT (e.g. a HELO restriction). */
  ehloAfterXclient?: string;
  /** RCPT addresses matching this get 550 5.1.1. */
  rejectRcpt?: RegExp;
  /** Milliseconds to wait before answering a command (by its verb, upper-case); Infinity never answers. */
  delay?: (verb: string) => number;
  /** Fixed reply bytes by verb (upper-case, 'DOT' for the final dot), overriding the defaults. */
  replies?: Record<string, string>;
  /** Close the connection once this many body bytes arrived. */
  closeAfterBodyBytes?: number;
}

interface SessionState {
  buffer: Buffer;
  inData: boolean;
  xclientDone: boolean;
  counted: boolean;
}

const DEFAULT_EXTENSIONS = ['PIPELINING', 'SIZE 10240000', '8BITMIME', 'SMTPUTF8', 'ENHANCEDSTATUSCODES'];

export class FakeBackend {
  readonly lines: string[] = [];
  readonly messages: Buffer[] = [];
  /** Connections accepted in total. */
  connections = 0;
  /** Sessions open now: connected and neither QUIT nor closed (QUIT counts at once, before the 221). */
  active = 0;
  maxActive = 0;
  readonly sockets = new Set<Socket>();
  port = 0;
  #server: net.Server;
  readonly #timers = new Set<NodeJS.Timeout>();

  private constructor(readonly options: FakeBackendOptions) {
    this.#server = this.#createServer();
  }

  static async start(options: FakeBackendOptions = {}): Promise<FakeBackend> {
    const backend = new FakeBackend(options);
    await backend.#listen(0);
    return backend;
  }

  /** Stops listening and drops every connection (backend down). */
  async stop(): Promise<void> {
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    for (const socket of this.sockets) socket.destroy();
    if (!this.#server.listening) return;
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Listens again on the same port (backend back up). */
  async restart(): Promise<void> {
    this.#server = this.#createServer();
    await this.#listen(this.port);
  }

  /** Closes every open connection from the backend's side, like Postfix's idle timeout. */
  dropAll(farewell = '421 4.4.2 fake.test Error: timeout exceeded\r\n'): void {
    for (const socket of this.sockets) socket.end(farewell);
  }

  /** Command lines starting with `verb` (case-insensitive). */
  commands(verb: string): string[] {
    return this.lines.filter((line) => line.toUpperCase().startsWith(verb.toUpperCase()));
  }

  #createServer(): net.Server {
    return net.createServer((socket) => this.#accept(socket));
  }

  #listen(port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        this.port = (this.#server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  #accept(socket: Socket): void {
    this.connections++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    this.sockets.add(socket);
    const state: SessionState = { buffer: Buffer.alloc(0), inData: false, xclientDone: false, counted: true };
    const leave = (): void => {
      if (state.counted) this.active--;
      state.counted = false;
    };
    socket.on('error', () => undefined);
    socket.on('close', () => {
      leave();
      this.sockets.delete(socket);
    });
    socket.on('data', (chunk: Buffer) => {
      state.buffer = concat(state.buffer, chunk);
      this.#process(socket, state, leave);
    });
    socket.write(this.options.greeting ?? '220 fake.test ESMTP\r\n');
  }

  #process(socket: Socket, state: SessionState, leave: () => void): void {
    for (;;) {
      if (state.inData) {
        const limit = this.options.closeAfterBodyBytes;
        if (limit !== undefined && state.buffer.length >= limit) {
          socket.destroy();
          return;
        }
        const end = findDataEnd(state.buffer);
        if (end === undefined) return;
        this.messages.push(Buffer.from(state.buffer.subarray(0, end.bodyEnd)));
        state.buffer = state.buffer.subarray(end.next);
        state.inData = false;
        this.#reply(socket, 'DOT', this.options.replies?.['DOT'] ?? `250 2.0.0 Ok: queued as Q${this.messages.length}\r\n`);
        continue;
      }
      const lf = state.buffer.indexOf('\r\n');
      if (lf === -1) return;
      const line = state.buffer.subarray(0, lf).toString('utf8');
      state.buffer = state.buffer.subarray(lf + 2);
      this.lines.push(line);
      this.#command(socket, state, line, leave);
    }
  }

  #command(socket: Socket, state: SessionState, line: string, leave: () => void): void {
    const verb = (line.split(' ')[0] ?? '').toUpperCase();
    const scripted = this.options.replies?.[verb];
    if (scripted !== undefined) return this.#reply(socket, verb, scripted);
    switch (verb) {
      case 'EHLO': {
        if (state.xclientDone && this.options.ehloAfterXclient !== undefined) return this.#reply(socket, verb, this.options.ehloAfterXclient);
        const xclient = this.options.xclient ?? 'NAME ADDR PORT PROTO HELO LOGIN';
        const keywords = [...(this.options.extensions ?? DEFAULT_EXTENSIONS), ...(xclient === false ? [] : [`XCLIENT ${xclient}`])];
        const lines = ['fake.test', ...keywords];
        return this.#reply(socket, verb, lines.map((l, i) => `250${i < lines.length - 1 ? '-' : ' '}${l}\r\n`).join(''));
      }
      case 'XCLIENT':
        if (this.options.xclient === false) return this.#reply(socket, verb, '502 5.5.2 Error: command not recognized\r\n');
        if (state.xclientDone) return this.#reply(socket, verb, '550 5.7.0 Error: insufficient authorization\r\n');
        state.xclientDone = true;
        return this.#reply(socket, verb, this.options.xclientReply ?? '220 fake.test ESMTP\r\n');
      case 'MAIL':
        return this.#reply(socket, verb, '250 2.1.0 Ok\r\n');
      case 'RCPT':
        if (this.options.rejectRcpt?.test(line)) return this.#reply(socket, verb, '550 5.1.1 <x>: Recipient address rejected: User unknown\r\n');
        return this.#reply(socket, verb, '250 2.1.5 Ok\r\n');
      case 'DATA':
        state.inData = true;
        return this.#reply(socket, verb, '354 End data with <CR><LF>.<CR><LF>\r\n');
      case 'RSET':
        return this.#reply(socket, verb, '250 2.0.0 Ok\r\n');
      case 'QUIT':
        leave();
        return this.#reply(socket, verb, '221 2.0.0 Bye\r\n', true);
      default:
        return this.#reply(socket, verb, '502 5.5.2 Error: command not recognized\r\n');
    }
  }

  #reply(socket: Socket, verb: string, bytes: string, end = false): void {
    const send = (): void => {
      if (socket.destroyed) return;
      if (end) socket.end(bytes);
      else socket.write(bytes);
    };
    const delay = this.options.delay?.(verb) ?? 0;
    if (delay === Infinity) return;
    if (delay <= 0) return send();
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      send();
    }, delay);
    this.#timers.add(timer);
  }
}

/** RFC 5321 §4.1.1.4: the body ends at CRLF.CRLF (or at once with ".CRLF" for an empty body). */
function findDataEnd(buffer: Buffer): { bodyEnd: number; next: number } | undefined {
  if (buffer.subarray(0, 3).toString('latin1') === '.\r\n') return { bodyEnd: 0, next: 3 };
  const i = buffer.indexOf('\r\n.\r\n');
  return i === -1 ? undefined : { bodyEnd: i + 2, next: i + 5 };
}

// Buffer.concat does not type-check with @types/node 20.9 under TypeScript 5.9.
function concat(head: Buffer, tail: Buffer): Buffer {
  const out = Buffer.allocUnsafe(head.length + tail.length);
  out.set(head, 0);
  out.set(tail, head.length);
  return out;
}
