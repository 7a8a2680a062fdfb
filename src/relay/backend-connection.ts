/**
 * One SMTP client connection to the backend MTA, strictly one command at a
 * time (no PIPELINING: the proxy needs each reply before it answers its own
 * client). Contract: command methods return the backend's reply whatever its
 * code and throw only when the connection is unusable (SmtpReplyError
 * TARPIT_ERR_BACKEND_UNAVAILABLE while opening, TARPIT_ERR_BACKEND_LOST after).
 * `data()` never sends the terminating dot unless the body ended normally.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Config } from '../config/schema.js';
import { replyText, type Reply } from '../core/reply.js';
import { SmtpReplyError, replyError } from '../core/errors.js';
import { backendReplySeconds } from '../metrics/registry.js';
import { BodyAbortedError, writeBody } from './body-writer.js';
import type { Capabilities } from './capabilities.js';
import { parseCapabilities } from './capabilities.js';
import { ReplyReader } from './reply-reader.js';
import type { BackendTlsOptions } from './socket-connect.js';
import { connectSocket, upgradeSocket } from './socket-connect.js';
import type { ClientIdentity } from './xclient.js';
import { buildXclientCommand, heloArgument } from './xclient.js';

export type { ClientIdentity } from './xclient.js';

/**
 * Per-step limits, in seconds: connect (and TLS handshake), greeting, command
 * (EHLO, STARTTLS, XCLIENT, MAIL, RCPT, RSET, QUIT), dataInit (DATA → 354),
 * dataBlock (longest a body write may wait for the backend to drain) and
 * dataDone (final dot → reply; content filters make this the slow one). The
 * configuration schema owns the shape and the defaults, each shorter than
 * what RFC 5321 §4.5.3.2 makes our own client wait for us.
 */
export type BackendTimeouts = Config['backend']['timeouts'];

export interface BackendConnectionOptions {
  /** Backend host name or IP address (IPv4 or IPv6). */
  host: string;
  port: number;
  /** Our name in the first EHLO (before XCLIENT). */
  heloName: string;
  /** 'starttls' requires STARTTLS (RFC 3207) and fails if it is not offered. @default 'none' */
  tls?: 'none' | 'starttls';
  tlsOptions?: BackendTlsOptions;
  /** Local address to connect from (the one in smtpd_authorized_xclient_hosts). */
  localAddress?: string;
  timeouts: BackendTimeouts;
}

/** RFC 1870 SIZE, RFC 6152 BODY, RFC 6531 SMTPUTF8; each sent only if the backend offers it. */
export interface MailParams {
  size?: number;
  body?: '7BIT' | '8BITMIME';
  smtputf8?: boolean;
}

type ReplyCommand = 'connect' | 'greeting' | 'ehlo' | 'starttls' | 'xclient' | 'mail' | 'rcpt' | 'data' | 'dot' | 'rset' | 'quit';
/** idle: no reply expected (any reply is unsolicited); body: between 354 and the dot. */
type Phase = 'opening' | 'idle' | 'command' | 'body';

interface Waiter {
  resolve(reply: Reply): void;
  reject(err: Error): void;
}

/** How long QUIT may take before we just close (the session is over either way). */
const QUIT_TIMEOUT = 1;

export class BackendConnection {
  /** Settles when the socket has closed, for whatever reason. */
  readonly closed: Promise<void>;
  readonly #timeouts: BackendTimeouts;
  #socket: Socket;
  readonly #reader = new ReplyReader();
  readonly #queued: Reply[] = [];
  #waiter: Waiter | undefined;
  #phase: Phase = 'opening';
  /** The first failure; a plain reason string until someone needs it as an Error (an Error's stack is not free, and every session's connection ends through here). */
  #failure: Error | string | undefined;
  #inTransaction = false;
  #caps: Capabilities = new Map();
  #xclientSent = false;
  /** Before this, a failure means the backend is unavailable; after, that it was lost. */
  #opened = false;
  #resolveClosed!: () => void;

  private constructor(socket: Socket, timeouts: BackendTimeouts) {
    this.#socket = socket;
    this.#timeouts = timeouts;
    this.closed = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
    this.#attach(socket);
  }

  /** Connects, reads the greeting, says EHLO (and STARTTLS + EHLO if asked). */
  static async open(options: BackendConnectionOptions, signal?: AbortSignal): Promise<BackendConnection> {
    const { timeouts } = options;
    let conn: BackendConnection | undefined;
    const onAbort = (): void => {
      if (conn) conn.#fail(new Error('connection attempt aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const socket = await connectSocket(options, timeouts.connect, signal);
      conn = new BackendConnection(socket, timeouts);
      if (signal?.aborted) onAbort();
      await conn.#handshake(options);
      conn.#phase = 'idle';
      conn.#opened = true;
      return conn;
    } catch (err) {
      conn?.destroy();
      throw err instanceof SmtpReplyError ? err : replyError('TARPIT_ERR_BACKEND_UNAVAILABLE', { cause: err });
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  get capabilities(): Capabilities {
    return this.#caps;
  }

  /** Socket open, no failure seen, no 421, no unsolicited reply while idle. */
  get alive(): boolean {
    return this.#failure === undefined && !this.#socket.destroyed;
  }

  /** True when XCLIENT is offered with every attribute in `attrs`. */
  supportsXclient(attrs: readonly string[]): boolean {
    const offered = this.#caps.get('XCLIENT');
    return offered !== undefined && attrs.every((a) => offered.includes(a.toUpperCase()));
  }

  /**
   * Hands the client's identity to the backend (Postfix XCLIENT_README), then
   * says EHLO with the client's HELO so the backend logs and checks that name.
   * Once per connection: Postfix answers a second XCLIENT with 550 5.7.0.
   * A 4xx/5xx to that EHLO is thrown as SmtpReplyError TARPIT_ERR_BACKEND_REPLY.
   */
  async xclient(client: ClientIdentity): Promise<void> {
    if (this.#xclientSent) {
      throw replyError('TARPIT_ERR_INTERNAL', { cause: new Error('XCLIENT already sent on this backend connection') });
    }
    const offered = this.#caps.get('XCLIENT');
    if (offered === undefined || !offered.includes('ADDR')) {
      throw replyError('TARPIT_ERR_BACKEND_NO_XCLIENT', {
        cause: new Error(`backend does not offer XCLIENT ADDR (offered: ${offered ? offered.join(' ') : 'no XCLIENT'})`),
      });
    }
    this.#xclientSent = true;
    const reply = await this.#command(buildXclientCommand(client, offered), 'xclient', this.#timeouts.command);
    // A 421 here is the backend closing (an idle timeout racing our XCLIENT, a
    // restart), not a refusal of XCLIENT: report a lost connection, so nobody
    // marks the pool unready over it.
    if (reply.code === 421) {
      throw replyError('TARPIT_ERR_BACKEND_LOST', { cause: new Error(`backend answered XCLIENT with ${describe(reply)}`) });
    }
    // Postfix restarts the session and greets again with 220.
    if (reply.code !== 220) {
      throw replyError('TARPIT_ERR_BACKEND_NO_XCLIENT', { cause: new Error(`backend answered XCLIENT with ${describe(reply)}`) });
    }
    await this.#ehlo(heloArgument(client), true);
  }

  /**
   * A MAIL was accepted and its transaction has not ended (final reply after
   * the body, or RSET): the next MAIL needs an RSET first. After a message's
   * final reply, whatever its code, the transaction is over (RFC 5321 §4.1.1.4),
   * so back-to-back messages need no RSET round trip.
   */
  get inTransaction(): boolean {
    return this.#inTransaction;
  }

  async mailFrom(address: string, params: MailParams = {}): Promise<Reply> {
    let line = `MAIL FROM:<${address}>`;
    if (params.size !== undefined && this.#caps.has('SIZE')) line += ` SIZE=${Math.max(0, Math.floor(params.size))}`;
    if (params.body !== undefined && this.#caps.has('8BITMIME')) line += ` BODY=${params.body}`;
    if (params.smtputf8 === true && this.#caps.has('SMTPUTF8')) line += ' SMTPUTF8';
    const reply = await this.#command(line, 'mail', this.#timeouts.command);
    this.#inTransaction = reply.code >= 200 && reply.code < 300;
    return reply;
  }

  async rcptTo(address: string): Promise<Reply> {
    return this.#command(`RCPT TO:<${address}>`, 'rcpt', this.#timeouts.command);
  }

  async rset(): Promise<Reply> {
    const reply = await this.#command('RSET', 'rset', this.#timeouts.command);
    if (reply.code >= 200 && reply.code < 300) this.#inTransaction = false;
    return reply;
  }

  /**
   * DATA, then the dot-stuffed body, then the final reply. Not 354: the reply is
   * returned and `body` is untouched. If `body` fails before its end, the socket
   * is destroyed (no dot: the backend drops the partial message) and the body's
   * error is rethrown unchanged. On any throw, the caller drains `body`.
   */
  async data(body: Readable): Promise<Reply> {
    const reply = await this.#command('DATA', 'data', this.#timeouts.dataInit, 'body');
    if (reply.code !== 354) {
      this.#phase = 'idle';
      return reply;
    }
    const sentAt = performance.now();
    try {
      await writeBody(body, this.#socket, {
        drainTimeout: this.#timeouts.dataBlock,
        beforeDot: () => (this.#phase = 'command'),
      });
    } catch (err) {
      if (err instanceof BodyAbortedError) {
        this.#fail(new Error('message body failed; connection dropped so the backend discards it', { cause: err.bodyError }));
        throw err.bodyError;
      }
      this.#fail(err instanceof Error ? err : new Error(String(err)));
      throw this.#lostError();
    }
    try {
      const reply = this.#checked(await this.#readReply('dot', this.#timeouts.dataDone, sentAt));
      this.#inTransaction = false;
      return reply;
    } finally {
      this.#phase = 'idle';
    }
  }

  /** QUIT and close; never throws, waits at most QUIT_TIMEOUT for the 221. */
  async quit(): Promise<void> {
    if (this.alive && this.#phase === 'idle') {
      try {
        await this.#command('QUIT', 'quit', QUIT_TIMEOUT);
      } catch {
        // The session is over whatever the backend says.
      }
    }
    this.destroy();
    await this.closed;
  }

  destroy(): void {
    this.#fail('connection closed by us');
  }

  // ── internals ────────────────────────────────────────────────────────────

  async #handshake(options: BackendConnectionOptions): Promise<void> {
    const greeting = await this.#readReply('greeting', this.#timeouts.greeting, performance.now());
    if (greeting.code !== 220) throw new Error(`backend greeted with ${describe(greeting)}`);
    await this.#ehlo(options.heloName, false);
    if (options.tls !== 'starttls') return;
    if (!this.#caps.has('STARTTLS')) throw new Error('backend does not offer STARTTLS but tls is "starttls"');
    const reply = await this.#command('STARTTLS', 'starttls', this.#timeouts.command, 'opening');
    if (reply.code !== 220) throw new Error(`backend answered STARTTLS with ${describe(reply)}`);
    // RFC 3207 §6 (CVE-2011-0411 class): plaintext after the 220 could be read as
    // if it came over TLS; refuse rather than discard silently.
    if (this.#reader.buffered || this.#queued.length > 0) throw new Error('backend sent data after its STARTTLS 220');
    await this.#startTls(options);
    this.#caps = new Map();
    await this.#ehlo(options.heloName, false);
  }

  async #startTls(options: BackendConnectionOptions): Promise<void> {
    const plain = this.#socket;
    plain.removeAllListeners('data');
    const secure = await upgradeSocket(plain, options.host, options.tlsOptions ?? {}, this.#timeouts.connect);
    this.#socket = secure;
    this.#attach(secure);
  }

  async #ehlo(name: string, afterXclient: boolean): Promise<void> {
    const reply = await this.#command(`EHLO ${name}`, 'ehlo', this.#timeouts.command, afterXclient ? 'idle' : 'opening');
    if (reply.code === 250) {
      this.#caps = parseCapabilities(reply);
      return;
    }
    if (afterXclient && reply.code >= 400) throw new SmtpReplyError('TARPIT_ERR_BACKEND_REPLY', reply);
    throw afterXclient ? replyError('TARPIT_ERR_BACKEND_LOST', { cause: new Error(`EHLO answered ${describe(reply)}`) }) : new Error(`backend answered EHLO with ${describe(reply)}`);
  }

  /** Writes one command line and reads its reply; `after` is the phase once answered. */
  async #command(line: string, name: ReplyCommand, timeout: number, after: Phase = 'idle'): Promise<Reply> {
    if (!this.alive) throw this.#lostError();
    // A CR or LF inside an argument would smuggle a second command (RFC 5321 §2.3.8).
    if (/[\r\n\0]/.test(line)) throw replyError('TARPIT_ERR_INTERNAL', { cause: new Error(`line break in ${name} command`) });
    const before = this.#phase;
    this.#phase = 'command';
    const pending = this.#readReply(name, timeout, performance.now());
    this.#socket.write(`${line}\r\n`);
    try {
      const reply = this.#checked(await pending);
      this.#phase = after;
      return reply;
    } catch (err) {
      this.#phase = before;
      throw err;
    }
  }

  /** A 421 means the backend is closing the connection (RFC 5321 §3.8): pass it on, mark dead. */
  #checked(reply: Reply): Reply {
    if (reply.code === 421) this.#fail(`backend answered ${describe(reply)}`);
    return reply;
  }

  #readReply(name: ReplyCommand, timeout: number, sentAt: number): Promise<Reply> {
    const observe = (reply: Reply): Reply => {
      backendReplySeconds.observe({ command: name }, (performance.now() - sentAt) / 1000);
      return reply;
    };
    const queued = this.#queued.shift();
    if (queued) return Promise.resolve(observe(queued));
    if (!this.alive) return Promise.reject(this.#lostError());
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => this.#fail(`no reply to ${name} within ${timeout}s`), timeout * 1000);
      this.#waiter = {
        resolve: (reply) => (clearTimeout(timer), resolve(observe(reply))),
        reject: (err) => (clearTimeout(timer), reject(err)),
      };
    });
  }

  #attach(socket: Socket): void {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    // Errors are followed by 'close'; recording the first one is enough.
    socket.on('error', (err) => this.#fail(err));
    socket.on('close', () => {
      this.#fail('backend closed the connection');
      this.#resolveClosed();
    });
  }

  #onData(chunk: Buffer): void {
    let replies: Reply[];
    try {
      replies = this.#reader.feed(chunk);
    } catch (err) {
      this.#fail(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    for (const reply of replies) {
      // While idle or mid-body nobody asked: e.g. Postfix's "421 4.4.2 Timeout
      // exceeded" on an idle spare, or an early reply during the body. Either way
      // the connection is no longer in step with us.
      if (this.#phase === 'idle' || this.#phase === 'body' || this.#queued.length > 0) {
        this.#fail(`unsolicited reply while ${this.#phase}: ${describe(reply)}`);
        return;
      }
      const waiter = this.#waiter;
      this.#waiter = undefined;
      if (waiter) waiter.resolve(reply);
      else this.#queued.push(reply);
    }
  }

  /** Records the first failure, closes the socket, rejects a pending reply wait. */
  #fail(err: Error | string): void {
    this.#failure ??= err;
    if (!this.#socket.destroyed) this.#socket.destroy();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.reject(this.#lostError());
  }

  #lostError(): SmtpReplyError {
    const failure = this.#failure ?? 'backend connection closed';
    const cause = failure instanceof Error ? failure : new Error(failure);
    this.#failure = cause;
    return replyError(this.#opened ? 'TARPIT_ERR_BACKEND_LOST' : 'TARPIT_ERR_BACKEND_UNAVAILABLE', { cause });
  }
}

/** The reply's code and first line, cut to 200 characters, for error messages. */
function describe(reply: Reply): string {
  return `${reply.code} ${replyText(reply).split('\n')[0] ?? ''}`.slice(0, 200);
}
