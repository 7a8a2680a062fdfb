/**
 * SMTP replies as values. A reply is a basic code (RFC 5321 §4.2), an enhanced
 * status code (RFC 3463) and text; `SmtpReplyError` carries one through code
 * that fails, so the trap, the relay and the front door answer the client with
 * it unchanged.
 */

/** RFC 5321 §4.2.1: the first digit says the class; only 4xx and 5xx refuse. */
export type TransientCode = 421 | 450 | 451 | 452 | 454;
export type PermanentCode = 500 | 501 | 502 | 503 | 504 | 521 | 550 | 551 | 552 | 553 | 554 | 555;
export type FailureCode = TransientCode | PermanentCode;

/** RFC 3463 §2: class.subject.detail; the class matches the reply's first digit. */
export type EnhancedCode = `${2 | 4 | 5}.${number}.${number}`;

export interface Reply {
  readonly code: number;
  readonly enhanced?: EnhancedCode | undefined;
  readonly text: string;
}

/** RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including CRLF. */
export const MAX_REPLY_LINE = 512;

const ENHANCED_RE = /^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)/;

/** Splits a leading enhanced status code off reply text ("5.7.1 Relay denied"). */
export function splitEnhanced(text: string): { enhanced?: EnhancedCode; text: string } {
  const m = ENHANCED_RE.exec(text);
  if (!m) return { text };
  return { enhanced: `${m[1]}.${m[2]}.${m[3]}` as EnhancedCode, text: text.slice(m[0].length) };
}

/** The reply's text as smtp-server writes it after the code: enhanced code first. */
export function replyText(reply: Reply): string {
  return reply.enhanced ? `${reply.enhanced} ${reply.text}` : reply.text;
}

/** One reply as wire bytes, multi-line when the text holds line breaks (RFC 5321 §4.2.1). */
export function toWire(reply: Reply): string {
  const lines = reply.text.split(/\r?\n/);
  return lines
    .map((line, i) => {
      const sep = i < lines.length - 1 ? '-' : ' ';
      const body = reply.enhanced ? `${reply.enhanced} ${line}` : line;
      return `${reply.code}${sep}${body}`.slice(0, MAX_REPLY_LINE - 2) + '\r\n';
    })
    .join('');
}
