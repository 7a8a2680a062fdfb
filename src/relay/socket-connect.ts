/**
 * The two socket steps of opening a backend connection: TCP connect and the
 * STARTTLS upgrade (RFC 3207), each with its own time limit and an abort
 * signal, so the pool can stop an attempt on shutdown.
 */
import net from 'node:net';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { backendReplySeconds } from '../metrics/registry.js';

export interface BackendTlsOptions {
  /** SNI name; defaults to the backend host when that is a name (RFC 6066 §3 forbids IPs). */
  servername?: string;
  /** @default true */
  rejectUnauthorized?: boolean;
  /** CA certificates to trust for the backend, PEM. */
  ca?: string | Buffer | Array<string | Buffer>;
}

export interface ConnectTarget {
  host: string;
  port: number;
  localAddress?: string;
}

/** TCP connect within `timeout` seconds; rejects with a plain Error. */
export function connectSocket(target: ConnectTarget, timeout: number, signal?: AbortSignal): Promise<Socket> {
  const started = performance.now();
  const socket = net.connect({ host: target.host, port: target.port, localAddress: target.localAddress });
  return settle(socket, 'connect', timeout, `connect to ${target.host}:${target.port}`, signal).then(() => {
    backendReplySeconds.observe({ command: 'connect' }, (performance.now() - started) / 1000);
    return socket;
  });
}

/** TLS over an already greeted plaintext socket (after the backend's 220 to STARTTLS). */
export function upgradeSocket(plain: Socket, host: string, options: BackendTlsOptions, timeout: number): Promise<TLSSocket> {
  const servername = options.servername !== undefined && net.isIP(options.servername) === 0 ? options.servername : net.isIP(host) === 0 ? host : undefined;
  const secure = tls.connect({
    socket: plain,
    // `host` is what the certificate is checked against; without it Node checks "localhost".
    host: options.servername ?? host,
    servername,
    rejectUnauthorized: options.rejectUnauthorized ?? true,
    ca: options.ca,
  });
  return settle(secure, 'secureConnect', timeout, `TLS handshake with ${host}`).then(() => secure);
}

function settle(socket: Socket, event: 'connect' | 'secureConnect', timeout: number, what: string, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', done);
      socket.off('close', onClose);
      socket.off(event, onEvent);
      if (err) {
        socket.destroy();
        reject(err);
      } else resolve();
    };
    const onEvent = (): void => done();
    const onClose = (): void => done(new Error(`${what}: connection closed`));
    const onAbort = (): void => done(new Error(`${what}: aborted`));
    const timer = setTimeout(() => done(new Error(`${what} took over ${timeout}s`)), timeout * 1000);
    socket.once(event, onEvent);
    socket.once('error', done);
    socket.once('close', onClose);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
