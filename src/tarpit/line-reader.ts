/**
 * Command lines out of socket bytes, for the hold (docs/design.md §4.5: bounded).
 *
 * Bytes are kept raw until a line is asked for, because a held session reads
 * a chunk it must not act on yet (the client talked out of turn) and parsing
 * it into strings early would only cost heap. What is kept is bounded: the
 * complete lines of what was pushed plus at most `maxLine` bytes of an
 * unfinished one. A longer line is reported once as `tooLong` and the rest of
 * it, up to its LF, is thrown away as it arrives.
 */

export type LineResult =
  /** A line without its ending; `bareLf` when it ended in LF alone (RFC 5321 §2.3.8 wants CRLF). */
  | { readonly kind: 'line'; readonly text: string; readonly bareLf: boolean }
  /** A line longer than the limit; its bytes are gone. */
  | { readonly kind: 'tooLong' };

const LF = 0x0a;
const CR = 0x0d;
const TOO_LONG: LineResult = Object.freeze({ kind: 'tooLong' });

export class LineReader {
  /** Unconsumed bytes are buf[start..end); buf may be a chunk we were given (not `owned`) or our own growable copy. */
  private buf: Buffer | undefined;
  private owned = false;
  private start = 0;
  private end = 0;
  /** Where the LF search resumes: bytes before it hold none. */
  private scanFrom = 0;
  /** Bytes after the last LF held: the unfinished line. */
  private tail = 0;
  /** Throwing bytes away until the next LF. */
  private discarding = false;
  /** Offset at which a cut too-long line sat (-1: none): reported once the lines before it are taken. */
  private cut = -1;

  /** @param maxLine longest line kept, in bytes, line ending included. */
  constructor(private readonly maxLine: number) {}

  /** Bytes held: complete lines not yet taken plus an unfinished one. */
  get buffered(): number {
    return this.end - this.start;
  }

  /** Whether anything the client sent is waiting here: a line, part of one, or a cut line to report. */
  get hasInput(): boolean {
    return this.end > this.start || this.cut !== -1;
  }

  /** The first bytes held, up to the first line end (or `max`), as text: what a client sent out of turn, for the log. */
  peek(max: number): string {
    if (this.buf === undefined || this.end === this.start) return '';
    const bytes = this.buf.subarray(this.start, Math.min(this.end, this.start + max));
    const lf = bytes.indexOf(LF);
    return bytes.subarray(0, lf === -1 ? bytes.length : lf).toString('latin1').replace(/\r$/, '');
  }

  push(chunk: Buffer): void {
    if (this.discarding) {
      const lf = chunk.indexOf(LF);
      if (lf === -1) return;
      this.discarding = false;
      chunk = chunk.subarray(lf + 1);
    }
    if (chunk.length === 0) return;
    const lastLf = chunk.lastIndexOf(LF);
    const tail = lastLf === -1 ? this.tail + chunk.length : chunk.length - lastLf - 1;
    if (tail > this.maxLine) {
      // Keep the complete lines; the unfinished one is already too long.
      this.discarding = true;
      if (lastLf === -1) {
        this.end -= this.tail;
        this.scanFrom = Math.min(this.scanFrom, this.end);
      } else {
        this.append(chunk.subarray(0, lastLf + 1));
      }
      this.tail = 0;
      if (this.end === this.start) this.reset();
      this.cut = this.end;
      return;
    }
    this.append(chunk);
    this.tail = tail;
  }

  /** The next line, a too-long report, or undefined when no complete line is here yet. */
  next(): LineResult | undefined {
    if (this.cut !== -1 && this.start >= this.cut) {
      this.cut = -1;
      return TOO_LONG;
    }
    const buf = this.buf;
    if (buf === undefined) return undefined;
    const lf = buf.subarray(0, this.end).indexOf(LF, this.scanFrom);
    if (lf === -1) {
      this.scanFrom = this.end;
      return undefined;
    }
    const begin = this.start;
    this.start = this.scanFrom = lf + 1;
    if (this.start === this.end) this.reset();
    if (lf + 1 - begin > this.maxLine) return TOO_LONG;
    const crlf = lf > begin && buf[lf - 1] === CR;
    return { kind: 'line', text: buf.toString('utf8', begin, crlf ? lf - 1 : lf), bareLf: !crlf };
  }

  /** Forgets everything (the session is over). */
  clear(): void {
    this.reset();
    this.discarding = false;
    this.cut = -1;
  }

  private append(chunk: Buffer): void {
    const buf = this.buf;
    if (buf === undefined) {
      // The common case, a whole command in one chunk: no copy.
      this.buf = chunk;
      this.owned = false;
      this.start = this.scanFrom = 0;
      this.end = chunk.length;
      return;
    }
    const live = this.end - this.start;
    const need = live + chunk.length;
    if (this.owned && this.end + chunk.length <= buf.length) {
      chunk.copy(buf, this.end);
      this.end += chunk.length;
      return;
    }
    // Grow by doubling, so a line trickled in byte by byte costs O(n) copying, not O(n²).
    const target = this.owned && need <= buf.length ? buf : Buffer.allocUnsafe(Math.max(need, 2 * live, 256));
    buf.copy(target, 0, this.start, this.end);
    chunk.copy(target, live);
    this.scanFrom -= this.start;
    if (this.cut !== -1) this.cut -= this.start;
    this.buf = target;
    this.owned = true;
    this.start = 0;
    this.end = need;
  }

  private reset(): void {
    // A pending cut sat after everything taken, so it now sits at the start.
    if (this.cut !== -1) this.cut = 0;
    this.buf = undefined;
    this.owned = false;
    this.start = this.end = this.scanFrom = this.tail = 0;
  }
}
