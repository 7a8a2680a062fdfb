/**
 * The central exception trap (docs/design.md §4.3): every smtp-server hook and every
 * socket listener runs through it. A throw or a rejection answers that client
 * with its SmtpReplyError's own reply, or `451 4.3.0` for anything else, counts
 * it in smtp_tarpit_handler_errors_total{stage}, logs it once with the session
 * id, and every other session goes on.
 *
 * Why each guard exists (measured against smtp-server 3.21.6, docs/platform-notes.md): a
 * rejected async handler or a throw in a timer kills the process; a callback
 * called twice writes a second reply and desynchronises the client; a throw in
 * onData leaves the parser in DATA mode so the client never gets a reply unless
 * the body stream is drained before answering.
 */
import type { Readable } from 'node:stream';
import { STAGES, type Stage } from '../core/stage.js';
import { isSmtpReplyError, replyError, type SmtpReplyError } from '../core/errors.js';
import { handlerErrorsTotal } from '../metrics/registry.js';
import type { Logger } from '../metrics/logger.js';
import { zeroSeries } from '../metrics/zero-series.js';

/** Where an error happened: a session stage, or outside any session. */
export type TrapStage = Stage | 'process' | 'server';

// A series per stage from the start, so the alert on trapped errors has something to evaluate (zero-series.ts).
zeroSeries(handlerErrorsTotal, [...STAGES, 'process', 'server'].map((stage) => ({ stage })));

type HookCallback<R> = (err?: Error | null, result?: R) => void;

export interface TrapContext {
  readonly sessionId?: string | undefined;
}

export class Trap {
  constructor(private readonly logger: Logger) {}

  /**
   * Records an error and turns it into the reply the client gets: its own when
   * it is an SmtpReplyError (a refusal we meant), 451 4.3.0 for anything else.
   * A client that left (TARPIT_ERR_CLIENT_GONE, an SmtpReplyError like any
   * refusal we meant) is therefore neither counted nor logged here: it is an outcome the session's log line records as its `hangup`
   * (docs/design.md §4.6), and bots leave all day; counted, it would turn the
   * counter and its alert from "our code failed" into noise.
   */
  catch(stage: TrapStage, err: unknown, ctx: TrapContext = {}): SmtpReplyError {
    if (isSmtpReplyError(err) && err.code !== 'TARPIT_ERR_INTERNAL') return err;
    handlerErrorsTotal.inc({ stage });
    this.logger.error({ err: toError(err), stage, session: ctx.sessionId }, 'trapped error');
    return replyError('TARPIT_ERR_INTERNAL', { cause: err });
  }

  /**
   * Adapts an async hook to smtp-server's callback contract: awaited, so a
   * rejection is caught; the callback runs once, whatever the hook does.
   */
  hook<A extends unknown[], R>(
    stage: Stage,
    ctx: (...args: A) => TrapContext,
    fn: (...args: A) => Promise<R> | R,
  ): (...args: [...A, HookCallback<R>]) => void {
    return (...all: [...A, HookCallback<R>]) => {
      const callback = all[all.length - 1] as HookCallback<R>;
      const args = all.slice(0, -1) as unknown as A;
      const context = ctx(...args);
      const once = this.once(stage, context, callback);
      let pending: Promise<R> | R;
      try {
        pending = fn(...args);
      } catch (err) {
        once(this.catch(stage, err, context));
        return;
      }
      Promise.resolve(pending).then(
        (result) => once(null, result),
        (err: unknown) => once(this.catch(stage, err, context)),
      );
    };
  }

  /**
   * onData's variant: whatever the handler does, the body stream is read to
   * its end before smtp-server gets the answer, or the client would wait for a
   * reply forever (docs/platform-notes.md).
   */
  dataHook<S, R>(
    ctx: (stream: Readable, session: S) => TrapContext,
    fn: (stream: Readable, session: S) => Promise<R>,
  ): (stream: Readable, session: S, callback: HookCallback<R>) => void {
    return (stream, session, callback) => {
      const context = ctx(stream, session);
      const once = this.once('body', context, callback);
      const answer = (err: Error | null, result?: R) => {
        whenDrained(stream, () => once(err, result));
      };
      let pending: Promise<R>;
      try {
        pending = fn(stream, session);
      } catch (err) {
        answer(this.catch('body', err, context));
        return;
      }
      pending.then(
        (result) => answer(null, result),
        (err: unknown) => answer(this.catch('body', err, context)),
      );
    };
  }

  /** Wraps an event listener or timer callback: a throw is counted and logged, never fatal. */
  guard<A extends unknown[]>(stage: TrapStage, fn: (...args: A) => unknown, ctx: TrapContext = {}): (...args: A) => void {
    return (...args: A) => {
      try {
        const result = fn(...args);
        if (result instanceof Promise) result.catch((err: unknown) => this.catch(stage, err, ctx));
      } catch (err) {
        this.catch(stage, err, ctx);
      }
    };
  }

  /** Process-wide: what escaped everything else is counted, logged, and survived. */
  installProcessHandlers(): () => void {
    const onException = (err: unknown) => this.catch('process', err);
    const onRejection = (reason: unknown) => this.catch('process', reason);
    process.on('uncaughtException', onException);
    process.on('unhandledRejection', onRejection);
    return () => {
      process.off('uncaughtException', onException);
      process.off('unhandledRejection', onRejection);
    };
  }

  private once<R>(stage: Stage, ctx: TrapContext, callback: HookCallback<R>): HookCallback<R> {
    let called = false;
    return (err, result) => {
      if (called) {
        // A second reply would desynchronise the client: count and drop it.
        this.catch(stage, new Error('hook answered twice; second answer dropped'), ctx);
        return;
      }
      called = true;
      try {
        callback(err, result);
      } catch (cbErr) {
        this.catch(stage, cbErr, ctx);
      }
    };
  }
}

function whenDrained(stream: Readable, done: () => void): void {
  if (stream.readableEnded || stream.destroyed) {
    done();
    return;
  }
  let fired = false;
  const finish = () => {
    if (fired) return;
    fired = true;
    done();
  };
  stream.once('end', finish);
  stream.once('close', finish);
  stream.once('error', finish);
  stream.resume();
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(`non-Error thrown: ${String(err)}`);
}
