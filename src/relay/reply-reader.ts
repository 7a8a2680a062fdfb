/**
 * Incremental parser for the backend's replies (RFC 5321 §4.2): feed it socket
 * chunks, get back complete replies. Bounded, because a broken or hostile
 * backend must not grow our memory: a line longer than MAX_BACKEND_REPLY_LINE
 * bytes or a reply of more than MAX_BACKEND_REPLY_LINES lines is a protocol
 * error, and the caller treats the connection as lost.
 */
import type { Reply } from '../core/reply.js';
import { splitEnhanced } from '../core/reply.js';

/**
 * RFC 5321 §4.5.3.1.5 caps a reply line at 512 octets, but real MTAs exceed it
 * (long EHLO keyword lists, policy texts); we allow four times that.
 */
export const MAX_BACKEND_REPLY_LINE = 2048;
/** Postfix's EHLO reply is about 12 lines; 100 is far beyond any honest reply. */
const MAX_BACKEND_REPLY_LINES = 100;

export class ReplyProtocolError extends Error {
  override readonly name = 'ReplyProtocolError';
}

// RFC 5321 §4.2: Reply-code [ ("-" / SP) textstring ] CRLF; codes are 2yz..5yz.
const LINE_RE = /^([2-5][0-5][0-9])(?:([ -])(.*))?$/s;

export class ReplyReader {
  #pending: Buffer = Buffer.alloc(0);
  #code = 0;
  #lines: string[] = [];

  /** True while bytes of an unfinished reply are held (RFC 3207 §5 check before TLS). */
  get buffered(): boolean {
    return this.#pending.length > 0 || this.#lines.length > 0;
  }

  /** Forgets everything held, e.g. plaintext that arrived before the TLS handshake. */
  reset(): void {
    this.#pending = Buffer.alloc(0);
    this.#code = 0;
    this.#lines = [];
  }

  /** Parses as many complete replies as `chunk` finishes; throws ReplyProtocolError. */
  feed(chunk: Buffer): Reply[] {
    let data = this.#pending.length > 0 ? Buffer.concat([this.#pending, chunk]) : chunk;
    const replies: Reply[] = [];
    for (;;) {
      const lf = data.indexOf(0x0a);
      if (lf === -1) {
        if (data.length > MAX_BACKEND_REPLY_LINE) throw new ReplyProtocolError(`reply line longer than ${MAX_BACKEND_REPLY_LINE} bytes`);
        this.#pending = data;
        return replies;
      }
      if (lf + 1 > MAX_BACKEND_REPLY_LINE) throw new ReplyProtocolError(`reply line longer than ${MAX_BACKEND_REPLY_LINE} bytes`);
      // Tolerate a bare LF ending like most clients do; strip the CR of CRLF.
      const end = lf > 0 && data[lf - 1] === 0x0d ? lf - 1 : lf;
      const line = data.subarray(0, end).toString('utf8');
      data = data.subarray(lf + 1);
      const reply = this.#line(line);
      if (reply) replies.push(reply);
    }
  }

  #line(line: string): Reply | undefined {
    const m = LINE_RE.exec(line);
    if (!m) throw new ReplyProtocolError(`malformed reply line: ${JSON.stringify(line.slice(0, 80))}`);
    const code = Number(m[1]);
    // RFC 5321 §4.2.1: every line of a multi-line reply carries the same code.
    if (this.#lines.length > 0 && code !== this.#code) {
      throw new ReplyProtocolError(`reply code changed from ${this.#code} to ${code} inside one reply`);
    }
    this.#code = code;
    this.#lines.push(m[3] ?? '');
    if (this.#lines.length > MAX_BACKEND_REPLY_LINES) {
      throw new ReplyProtocolError(`reply longer than ${MAX_BACKEND_REPLY_LINES} lines`);
    }
    if (m[2] === '-') return undefined;
    const reply = buildReply(code, this.#lines);
    this.#lines = [];
    this.#code = 0;
    return reply;
  }
}

function buildReply(code: number, lines: readonly string[]): Reply {
  const first = splitEnhanced(lines[0] ?? '');
  // RFC 3463 §3: the enhanced code's class must match the reply's first digit;
  // a mismatching one is left in the text rather than trusted.
  const enhanced = first.enhanced && first.enhanced[0] === String(code)[0] ? first.enhanced : undefined;
  if (!enhanced) return { code, text: lines.join('\n') };
  // RFC 2034 §3: each line of a multi-line reply repeats the enhanced code.
  const text = lines
    .map((line) => {
      const split = splitEnhanced(line);
      return split.enhanced === enhanced ? split.text : line;
    })
    .join('\n');
  return { code, enhanced, text };
}

