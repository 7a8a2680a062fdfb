/**
 * Sits between smtp-server's DATA stream and the backend (docs/design.md §4.4, no
 * smuggling): counts bytes against the size limit and, in `reject` mode,
 * fails on the first bare CR or LF. smtp-server ends DATA only at CRLF.CRLF,
 * but a backend that also accepts `<LF>.<LF>` (Postfix 3.7) would see a second
 * message in what we forwarded verbatim. In `normalize` mode the relay's
 * dot-stuffing stream rewrites bare line ends to CRLF, so nothing here.
 *
 * On error the relay drops the backend connection before the final dot, so
 * the backend discards the partial message.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { replyError } from '../core/errors.js';
import type { BareLineEndings } from '../config/schema.js';

const CR = 0x0d;
const LF = 0x0a;

export interface DataGuardOptions {
  /** bytes */
  readonly maxBytes: number;
  readonly bareLineEndings: BareLineEndings;
}

export type DataGuardViolation = 'message_size' | 'bare_line_ending';

export class DataGuard extends Transform {
  bytes = 0;
  violation: DataGuardViolation | undefined;
  /** The previous chunk ended in CR: its LF may still come. */
  private pendingCr = false;

  constructor(private readonly options: DataGuardOptions) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.options.maxBytes) {
      this.violation = 'message_size';
      done(replyError('TARPIT_ERR_MESSAGE_TOO_BIG'));
      return;
    }
    if (this.options.bareLineEndings === 'reject' && this.hasBareLineEnding(chunk)) {
      this.violation = 'bare_line_ending';
      done(replyError('TARPIT_ERR_BARE_LINE_ENDING'));
      return;
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.options.bareLineEndings === 'reject' && this.pendingCr) {
      this.violation = 'bare_line_ending';
      done(replyError('TARPIT_ERR_BARE_LINE_ENDING'));
      return;
    }
    done();
  }

  private hasBareLineEnding(chunk: Buffer): boolean {
    if (chunk.length === 0) return false;
    if (this.pendingCr && chunk[0] !== LF) return true;
    let i = chunk.indexOf(LF, this.pendingCr ? 1 : 0);
    while (i !== -1) {
      if (i === 0 ? !this.pendingCr : chunk[i - 1] !== CR) return true;
      i = chunk.indexOf(LF, i + 1);
    }
    i = chunk.indexOf(CR);
    while (i !== -1 && i < chunk.length - 1) {
      if (chunk[i + 1] !== LF) return true;
      i = chunk.indexOf(CR, i + 1);
    }
    this.pendingCr = chunk[chunk.length - 1] === CR;
    return false;
  }
}
