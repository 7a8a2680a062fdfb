/**
 * Wiring a held socket to its session without a closure per session or per
 * wait: the listeners are shared functions (`this` is the socket) that find
 * the session through a symbol on the socket and call its symbol-named entry
 * points, which stay off the session's public API.
 */
import type { Socket } from 'node:net';

export const kData = Symbol('data');
export const kHangup = Symbol('hangup');
export const kFinish = Symbol('finish');
const kSession = Symbol('holdSession');

/** What the shared listeners call on a held socket's session. */
export interface SocketSink {
  /** Bytes from the client. */
  [kData](chunk: Buffer): void;
  /** The client's FIN (no error) or a socket error. */
  [kHangup](err: Error | undefined): void;
  /** 'close': the socket is gone. */
  [kFinish](): void;
}

type HeldSocket = Socket & { [kSession]?: SocketSink };

function onSocketData(this: HeldSocket, chunk: Buffer): void {
  this[kSession]?.[kData](chunk);
}

function onSocketEnd(this: HeldSocket): void {
  this[kSession]?.[kHangup](undefined);
}

function onSocketError(this: HeldSocket, err: Error): void {
  this[kSession]?.[kHangup](err);
}

function onSocketClose(this: HeldSocket): void {
  this[kSession]?.[kFinish]();
}

function destroyOnFinish(this: Socket): void {
  this.destroy();
}

/**
 * Hands the socket's events to `sink`, paused. False when the socket had
 * already closed: its 'close' will not come again, so the sink's finish is
 * called on the next tick instead.
 */
export function attach(socket: Socket, sink: SocketSink): boolean {
  const held = socket as HeldSocket;
  held[kSession] = sink;
  // Explicitly paused, so adding the 'data' listener does not start the flow.
  socket.pause();
  // Stays attached after the session ends: a late reset must never be an unhandled 'error'.
  socket.on('error', onSocketError);
  socket.on('data', onSocketData);
  socket.on('end', onSocketEnd);
  socket.on('close', onSocketClose);
  if (!socket.closed) return true;
  process.nextTick(onSocketClose.bind(held));
  return false;
}

/** Lets go of the session (the error listener stays, see `attach`). */
export function detach(socket: Socket): void {
  (socket as HeldSocket)[kSession] = undefined;
  socket.off('data', onSocketData);
  socket.off('end', onSocketEnd);
  socket.off('close', onSocketClose);
  socket.off('finish', destroyOnFinish);
}

/**
 * Ends the socket after what was written and destroys it once flushed. What
 * the client still sends is read and discarded, so the close is a FIN the
 * client reads after our reply, not a reset that may discard it.
 */
export function endSocket(socket: Socket): void {
  socket.resume();
  socket.end();
  socket.once('finish', destroyOnFinish);
}
