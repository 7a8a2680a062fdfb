/**
 * Hands an accepted socket to smtp-server and lets it greet at once.
 *
 * smtp-server 3.21.6 holds every banner a fixed 100 ms to catch early talkers
 * (`SMTPConnection#init`: `setTimeout(() => this.connectionReady(), 100)`, no
 * option). On the relay path that is 100 ms on every clean message, which
 * capped relayed throughput at sessions / 0.1 s in bench/relay.ts. Our front
 * door owns the greet wait (docs/design.md §3 smtp: it watches for pregreets before
 * the hand-over), so smtp-server's own wait is redundant: we start the
 * greeting ourselves and make the timer's later call a no-op.
 *
 * This reaches into two private members (the `connections` Set and
 * `connectionReady`), pinned to smtp-server 3.21.6 in package.json. If either
 * is missing the socket is handed over unchanged (the banner then comes 100 ms
 * later, nothing breaks), and test/smtp/hand-over.test.ts fails loudly.
 */
import type { Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { captureWireAddresses } from './envelope.js';

interface ConnectionInternals {
  connectionReady?: (next?: () => void) => void;
  send?: (code: number, data: string) => void;
  close?: () => void;
}

/**
 * What a session deadline (handlers.ts) needs of smtp-server's connection:
 * its one write site `send` (which writes nothing during a TLS handshake and
 * closes on 421) and `close` (which stops parsing, so no final dot is read
 * after it). Writing on the raw socket instead would put cleartext into a TLS
 * session.
 */
export interface ServerConnection {
  send(code: number, data: string): void;
  close(): void;
}

const connectionOf = new WeakMap<Socket, ServerConnection>();

/** smtp-server's connection for a socket handed over, when the hand-over could find it. */
export function serverConnection(socket: Socket): ServerConnection | undefined {
  return connectionOf.get(socket);
}

export interface HandOverOptions {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

/** Returns whether the immediate greeting could be arranged. */
export function handOver(server: SMTPServer, socket: Socket, options: HandOverOptions): boolean {
  const connections = (server as unknown as { connections?: Set<ConnectionInternals> }).connections;
  if (!(connections instanceof Set)) {
    server.connect(socket, options);
    return false;
  }
  let created: ConnectionInternals | undefined;
  // An own property shadows Set.prototype.add for the one synchronous call
  // that creates the connection, then goes away.
  connections.add = (connection: ConnectionInternals) => {
    created = connection;
    return Set.prototype.add.call(connections, connection) as Set<ConnectionInternals>;
  };
  try {
    server.connect(socket, options);
  } finally {
    delete (connections as { add?: unknown }).add;
  }
  // The one place the connection can be reached: where the client's own address bytes are kept (src/smtp/envelope.ts).
  if (created) captureWireAddresses(created);
  const ready = created?.connectionReady;
  // Called as methods (handlers.ts expire), so the connection itself serves: no wrapper per session.
  if (created && typeof created.send === 'function' && typeof created.close === 'function') connectionOf.set(socket, created as ServerConnection);
  if (!created || typeof ready !== 'function') return false;
  created.connectionReady = () => undefined;
  ready.call(created);
  return true;
}
