/**
 * An in-process backend MTA for end-to-end tests: a real smtp-server that
 * accepts XCLIENT once per connection (like Postfix) and records every
 * message with the client identity XCLIENT gave it and the exact body bytes.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';

export interface ReceivedMessage {
  readonly from: string;
  readonly to: readonly string[];
  readonly body: Buffer;
  /** The address the backend believes the client has (XCLIENT ADDR). */
  readonly clientAddress: string;
  readonly helo: string;
  readonly xclient: Readonly<Record<string, string>>;
  readonly connectionId: string;
}

export interface BackendBehaviour {
  /** Reject these senders at MAIL with this reply (code, text). */
  mail?: (address: string) => { code: number; text: string } | undefined;
  /** Reject these recipients with this reply (code, text). */
  rcpt?: (address: string) => { code: number; text: string } | undefined;
  /** Close the connection after reading this many body bytes (a crash mid-DATA). */
  dropAfterBodyBytes?: number;
  /** Advertise XCLIENT (default true). */
  xclient?: boolean;
  /** Delay every DATA reply by ms. */
  dataDelayMs?: number;
}

export interface TestBackend {
  readonly port: number;
  readonly messages: ReceivedMessage[];
  /** Connection ids that carried at least one XCLIENT. */
  readonly connections: Set<string>;
  /** Connections open right now, and the most seen at once. */
  readonly stats: { open: number; maxOpen: number; accepted: number };
  behaviour: BackendBehaviour;
  close(): Promise<void>;
}

export async function startBackend(behaviour: BackendBehaviour = {}, port = 0): Promise<TestBackend> {
  const messages: ReceivedMessage[] = [];
  const connections = new Set<string>();
  const stats = { open: 0, maxOpen: 0, accepted: 0 };
  const state: { behaviour: BackendBehaviour } = { behaviour };
  const server = new SMTPServer({
    name: 'backend.test',
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    disableReverseLookup: true,
    useXClient: behaviour.xclient !== false,
    size: 64 * 1024 * 1024,
    logger: false,
    onConnect(_session, cb) {
      stats.open++;
      stats.accepted++;
      stats.maxOpen = Math.max(stats.maxOpen, stats.open);
      cb();
    },
    onClose() {
      stats.open--;
    },
    onMailFrom(address, session, cb) {
      if (session.xClient.has('ADDR')) connections.add(session.id);
      const refusal = state.behaviour.mail?.(address.address);
      if (refusal) {
        cb(Object.assign(new Error(refusal.text), { responseCode: refusal.code }));
        return;
      }
      cb();
    },
    onRcptTo(address, _session, cb) {
      const refusal = state.behaviour.rcpt?.(address.address);
      if (refusal) {
        const err = Object.assign(new Error(refusal.text), { responseCode: refusal.code });
        cb(err);
        return;
      }
      cb();
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      let bytes = 0;
      stream.on('data', (chunk: Buffer) => {
        chunks.push(chunk);
        bytes += chunk.length;
        const drop = state.behaviour.dropAfterBodyBytes;
        if (drop !== undefined && bytes >= drop) {
          for (const c of server.connections) {
            const conn = c as unknown as { id: string; close(): void; _socket: { destroy(): void } };
            if (conn.id === session.id) conn._socket.destroy();
          }
        }
      });
      stream.on('end', () => {
        const finish = () => {
          messages.push({
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            to: session.envelope.rcptTo.map((r) => r.address),
            body: Buffer.concat(chunks),
            clientAddress: session.remoteAddress,
            helo: session.hostNameAppearsAs,
            xclient: Object.fromEntries([...session.xClient].map(([k, v]) => [k, String(v)])),
            connectionId: session.id,
          });
          cb(null, 'Ok: queued');
        };
        if (state.behaviour.dataDelayMs) setTimeout(finish, state.behaviour.dataDelayMs);
        else finish();
      });
    },
  });
  server.on('error', () => undefined);
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.server.address() as AddressInfo;
  return {
    port: address.port,
    messages,
    connections,
    stats,
    get behaviour() {
      return state.behaviour;
    },
    set behaviour(b: BackendBehaviour) {
      state.behaviour = b;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of server.connections) (c as unknown as { _socket: { destroy(): void } })._socket.destroy();
        server.close(() => resolve());
      }),
  };
}
