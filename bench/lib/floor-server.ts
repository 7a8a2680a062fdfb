/**
 * The floor of the proxy's CPU per message (bench/floor.ts): a bare
 * smtp-server 3.21.6 with the proxy's own options (src/smtp/proxy.ts
 * smtpServerOptions) and hooks that accept everything at once.
 *
 *   node --import tsx bench/lib/floor-server.ts <listenPort> <front> <relay> [backendPort] [warm]
 *
 * front: `listen`   smtp-server's own listener (banner held 100 ms by smtp-server)
 *        `handover` our front door's way: net.createServer({pauseOnConnect, noDelay})
 *                   and src/smtp/hand-over.ts (banner at once)
 * relay: `none`     onData drains the stream, answers 250: smtp-server alone
 *        `raw`      the least a relay must do, written flat: per client session a
 *                   backend connection pre-opened (connect, 220, EHLO), then
 *                   XCLIENT, EHLO, MAIL, RCPT, DATA, body as it comes, dot, QUIT;
 *                   one write per command, replies parsed as latin1 strings; no
 *                   dot-stuffing, metrics, logging, timers or error handling
 *                   beyond the minimum (measurement only, never for real use)
 *
 * Prints "ready" on stdout once listening.
 */
import { connect, createServer, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession, type SMTPServerOptions } from 'smtp-server';

// FLOOR_HANDOVER: the built hand-over to use (bench/floor.ts passes the proxy's own build).
const { handOver } = (await import(process.env.FLOOR_HANDOVER ?? '../../src/smtp/hand-over.js')) as typeof import('../../src/smtp/hand-over.js');

const [portArg, front = 'handover', relay = 'none', backendArg = '0', warmArg = '20'] = process.argv.slice(2);
const port = Number(portArg);
const backendPort = Number(backendArg);
const warm = Number(warmArg);

type Callback = (err?: Error | null, message?: string) => void;

/** One backend connection, one command at a time. */
class Raw {
  readonly sock: Socket;
  private buf = '';
  private waiter: ((reply: string) => void) | undefined;
  xclientSent = false;

  private constructor(sock: Socket) {
    this.sock = sock;
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', () => undefined);
  }

  static async open(port: number): Promise<Raw> {
    const sock = connect({ host: '127.0.0.1', port });
    const raw = new Raw(sock);
    const greeting = raw.reply();
    await greeting;
    await raw.cmd('EHLO floor.bench');
    return raw;
  }

  reply(): Promise<string> {
    return new Promise((resolve) => (this.waiter = resolve));
  }

  cmd(line: string): Promise<string> {
    const p = this.reply();
    this.sock.write(`${line}\r\n`);
    return p;
  }

  private onData(chunk: Buffer): void {
    this.buf += chunk.toString('latin1');
    const b = this.buf;
    if (!b.endsWith('\r\n')) return;
    const prev = b.lastIndexOf('\r\n', b.length - 3);
    const lastStart = prev === -1 ? 0 : prev + 2;
    if (b.charCodeAt(lastStart + 3) !== 32) return; // "250-" continuation
    this.buf = '';
    const w = this.waiter;
    this.waiter = undefined;
    w?.(b);
  }
}

const ok = (reply: string, code: string): Error | null => (reply.startsWith(code) ? null : new Error(reply.trim()));

/** `warm` connections being opened or ready; take() hands one out and opens a replacement. */
const spares: Promise<Raw>[] = [];
function take(): Promise<Raw> {
  const r = spares.shift() ?? Raw.open(backendPort);
  spares.push(Raw.open(backendPort));
  return r;
}

const backends = new Map<string, Promise<Raw>>();

const hooks: Partial<SMTPServerOptions> =
  relay === 'raw'
    ? {
        onConnect(session: SMTPServerSession, cb: Callback) {
          backends.set(session.id, take());
          cb();
        },
        onMailFrom(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback) {
          void (async () => {
            const b = await (backends.get(session.id) as Promise<Raw>);
            if (!b.xclientSent) {
              b.xclientSent = true;
              const x = await b.cmd(`XCLIENT ADDR=${session.remoteAddress} NAME=[UNAVAILABLE] PORT=${session.remotePort} PROTO=ESMTP`);
              if (ok(x, '220')) return cb(ok(x, '220'));
              await b.cmd(`EHLO ${session.hostNameAppearsAs}`);
            }
            cb(ok(await b.cmd(`MAIL FROM:<${address.address}>`), '2'));
          })();
        },
        onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, cb: Callback) {
          void (async () => {
            const b = await (backends.get(session.id) as Promise<Raw>);
            cb(ok(await b.cmd(`RCPT TO:<${address.address}>`), '2'));
          })();
        },
        onData(stream: Readable, session: SMTPServerSession, cb: Callback) {
          void (async () => {
            const b = await (backends.get(session.id) as Promise<Raw>);
            const r = await b.cmd('DATA');
            if (!r.startsWith('354')) {
              stream.resume();
              stream.on('end', () => cb(new Error(r.trim())));
              return;
            }
            let last = 0x0a;
            stream.on('data', (chunk: Buffer) => {
              if (chunk.length) last = chunk[chunk.length - 1] as number;
              b.sock.write(chunk);
            });
            stream.on('end', () => {
              const done = b.reply();
              b.sock.write(last === 0x0a ? '.\r\n' : '\r\n.\r\n');
              void done.then((reply) => cb(ok(reply, '2'), reply.slice(4).trim()));
            });
          })();
        },
        onClose(session: SMTPServerSession) {
          const p = backends.get(session.id);
          backends.delete(session.id);
          void p?.then(async (b) => {
            if (b.sock.destroyed) return;
            await b.cmd('QUIT');
            b.sock.destroy();
          });
        },
      }
    : {
        onConnect(_session: SMTPServerSession, cb: Callback) {
          cb();
        },
        onMailFrom(_a: SMTPServerAddress, _s: SMTPServerSession, cb: Callback) {
          cb();
        },
        onRcptTo(_a: SMTPServerAddress, _s: SMTPServerSession, cb: Callback) {
          cb();
        },
        onData(stream: Readable, _s: SMTPServerSession, cb: Callback) {
          stream.on('end', () => cb(null, 'Ok: queued'));
          stream.resume();
        },
        onClose() {
          // nothing held
        },
      };

// The proxy's options with the shipped defaults (src/smtp/proxy.ts smtpServerOptions, no TLS key).
const smtp = new SMTPServer({
  name: 'tarpit.bench',
  banner: '',
  size: 10240000,
  maxCommandLength: 4096,
  socketTimeout: 300_000,
  disabledCommands: ['AUTH', 'STARTTLS'],
  authOptional: true,
  hideENHANCEDSTATUSCODES: true,
  hideDSN: true,
  disableReverseLookup: true,
  logger: false,
  ...hooks,
});
smtp.on('error', () => undefined);

let seq = 0;
if (front === 'listen') {
  smtp.listen(port, '127.0.0.1', () => console.log('ready'));
} else {
  const server = createServer({ pauseOnConnect: true, noDelay: true }, (socket: Socket) => {
    socket.on('error', () => undefined);
    handOver(smtp, socket, { id: `floor${(++seq).toString(36)}`, remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort ?? 0 });
  });
  server.listen({ host: '127.0.0.1', port, backlog: 4096 }, () => console.log('ready'));
}
if (relay === 'raw') for (let i = 0; i < warm; i++) spares.push(Raw.open(backendPort));
process.on('SIGTERM', () => process.exit(0));
