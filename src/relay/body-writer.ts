/**
 * Streams a message body to the backend after its 354, dot-stuffed, with
 * backpressure. Contract (docs/design.md §4.1, "no half-delivery"): the terminating
 * CRLF.CRLF is written only after `body` ended normally. If `body` errors or
 * closes before its end, the dot is never written; the caller destroys the
 * backend socket so the backend discards the partial message (RFC 5321 §4.1.1.4:
 * a message is only delivered once the end of mail data was received).
 */
import type { Readable, Transform, Writable } from 'node:stream';

/** nodemailer's DataStream as we use it: a Transform, nothing more. */
type DataStreamClass = new () => Transform;

// nodemailer has the dot-stuffing transform we want (RFC 5321 §4.5.2, plus CRLF
// on its end) but does not export it, and its `./lib/*` export maps to the CJS
// build. Load the ESM file next to nodemailer's resolved entry, once, at module
// load, so a missing file fails at start-up rather than on the first message.
const dataStreamUrl = new URL('./smtp-connection/data-stream.js', import.meta.resolve('nodemailer'));
const dataStreamModule = (await import(dataStreamUrl.href)) as { default: DataStreamClass };
const DataStream: DataStreamClass = dataStreamModule.default;

/** The body failed (errored or closed early); `bodyError` is what it failed with, unchanged. */
export class BodyAbortedError extends Error {
  override readonly name = 'BodyAbortedError';
  readonly bodyError: unknown;
  constructor(bodyError: unknown) {
    super('message body failed before its end', { cause: bodyError });
    this.bodyError = bodyError;
  }
}

export interface WriteBodyOptions {
  /** Seconds a write may wait for the backend to drain before the connection counts as lost. */
  drainTimeout: number;
  /** Called just before the terminating dot is queued, so a reply to it is expected from then on. */
  beforeDot: () => void;
}

/**
 * Resolves once the whole stuffed body and its terminating dot were queued for
 * `socket`. Rejects with BodyAbortedError when `body` failed (nothing more is
 * written; the caller must destroy `socket`), or with an Error when `socket`
 * closed or stopped draining. On rejection `body` is left paused, unread and
 * with our listeners removed: the caller drains it.
 */
export function writeBody(body: Readable, socket: Writable, options: WriteBodyOptions): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const stuffer = new DataStream();
    // end: false; the socket outlives the message. We never call stuffer.end()
    // unless body ended, and that is the only path to its _flush (the dot).
    stuffer.pipe(socket, { end: false });
    let drainTimer: NodeJS.Timeout | undefined;

    const cleanup = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onBodyError);
      body.off('close', onBodyClose);
      socket.off('close', onSocketClose);
      stuffer.off('drain', onDrain);
      if (drainTimer) clearTimeout(drainTimer);
      drainTimer = undefined;
    };
    const abort = (err: Error): void => {
      cleanup();
      body.pause();
      stuffer.unpipe(socket);
      // destroy() skips _flush: no dot, whatever is still buffered is dropped.
      stuffer.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer | string): void => {
      if (stuffer.write(chunk)) return;
      body.pause();
      drainTimer = setTimeout(() => {
        abort(new Error(`backend did not accept message data within ${options.drainTimeout}s`));
      }, options.drainTimeout * 1000);
    };
    const onDrain = (): void => {
      if (drainTimer) clearTimeout(drainTimer);
      drainTimer = undefined;
      body.resume();
    };
    const onEnd = (): void => {
      cleanup();
      options.beforeDot();
      // Resolve now rather than on the stuffer's 'end': if the socket dies, pipe()
      // unpipes and 'end' never comes; the reply wait then sees the loss instead.
      stuffer.end();
      resolve();
    };
    const onBodyError = (err: unknown): void => abort(new BodyAbortedError(err));
    // A destroyed body (client hang-up) may close without an error and without 'end'.
    const onBodyClose = (): void => abort(new BodyAbortedError(new Error('message body closed before its end')));
    const onSocketClose = (): void => abort(new Error('backend closed the connection during the message body'));

    if (body.errored) return abort(new BodyAbortedError(body.errored));
    if (body.readableEnded) return onEnd();
    if (body.destroyed) return onBodyClose();
    socket.on('close', onSocketClose);
    stuffer.on('drain', onDrain);
    body.on('error', onBodyError);
    body.on('close', onBodyClose);
    body.on('end', onEnd);
    body.on('data', onData);
    body.resume();
  });
}
