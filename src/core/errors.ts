/**
 * Every reply smtp-tarpit gives on its own account, by code. Code compares with
 * code (`err.code === 'TARPIT_ERR_BACKEND_UNAVAILABLE'`), never with message text.
 * docs/replies.md lists the same table for admins; test/core/errors.test.ts fails
 * when the two drift apart.
 */
import type { EnhancedCode, FailureCode, Reply } from './reply.js';
import { replyText, toWire } from './reply.js';

interface ErrorSpec {
  readonly code: FailureCode;
  readonly enhanced: EnhancedCode;
  readonly text: string;
}

export const ERRORS = {
  // RFC 3463 X.3.0: other or undefined mail system status; what the trap answers.
  TARPIT_ERR_INTERNAL: { code: 451, enhanced: '4.3.0', text: 'Internal error, please try again later' },
  // The same before the banner, where RFC 5321 §3.1 allows only 220, 421 or 554.
  TARPIT_ERR_INTERNAL_CONNECT: { code: 421, enhanced: '4.3.0', text: 'Internal error, please try again later' },
  // RFC 3463 X.4.1: no answer from host (connect failed or refused).
  TARPIT_ERR_BACKEND_UNAVAILABLE: { code: 451, enhanced: '4.4.1', text: 'Mail system unavailable, please try again later' },
  // RFC 3463 X.4.2: bad connection (backend dropped or timed out mid-transaction).
  TARPIT_ERR_BACKEND_LOST: { code: 451, enhanced: '4.4.2', text: 'Connection to mail system lost, please try again later' },
  // RFC 3463 X.4.5: mail system congestion (every pooled connection is busy).
  TARPIT_ERR_POOL_EXHAUSTED: { code: 451, enhanced: '4.4.5', text: 'Mail system busy, please try again later' },
  // The same congestion, for one client network that already holds its share of the pool (backend.maxPerGroup):
  // refused at once, so the rest of the pool stays free for other networks.
  TARPIT_ERR_BACKEND_GROUP_BUSY: { code: 451, enhanced: '4.4.5', text: 'Too many sessions from your network, please try again later' },
  // RFC 3463 X.4.2 (bad connection) for a session past limits.sessionTimeout: 421 when no reply is owed (RFC 5321 §4.2.2
  // allows it at any time), 451 as the reply to a command in flight or to a message cut in mid-body.
  TARPIT_ERR_SESSION_TIMEOUT: { code: 421, enhanced: '4.4.2', text: 'Session time limit reached, closing connection' },
  TARPIT_ERR_SESSION_TIMEOUT_TRANSACTION: { code: 451, enhanced: '4.4.2', text: 'Session time limit reached, please try again later' },
  // Message data arriving below limits.minDataRate after limits.dataGrace (RFC 5321 §4.5.3.2 lets a server require progress).
  TARPIT_ERR_DATA_TOO_SLOW: { code: 451, enhanced: '4.4.2', text: 'Message data too slow, please try again later' },
  // RFC 3463 X.3.5: system incorrectly configured (backend refuses XCLIENT; relaying
  // without it would hide the client's address and open the backend as a relay).
  TARPIT_ERR_BACKEND_NO_XCLIENT: { code: 451, enhanced: '4.3.5', text: 'Mail system not configured to accept mail, please try again later' },
  // RFC 3463 X.3.2: system not accepting network messages.
  TARPIT_ERR_SHUTTING_DOWN: { code: 421, enhanced: '4.3.2', text: 'Service shutting down, please try again later' },
  TARPIT_ERR_TOO_MANY_CONNECTIONS: { code: 421, enhanced: '4.3.2', text: 'Too many connections, please try again later' },
  // RFC 3463 X.7.0: other security or policy status.
  TARPIT_ERR_TOO_MANY_FROM_CLIENT: { code: 421, enhanced: '4.7.0', text: 'Too many connections from your address, please try again later' },
  // A suspicious client past a tarpit cap (config tarpit.*): refused at once, since holding it would risk the process.
  TARPIT_ERR_TARPIT_FULL: { code: 421, enhanced: '4.7.0', text: 'Too busy, please try again later' },
  // RFC 5321 §2.3.8 allows only CRLF as a line ending; bare CR or LF is how SMTP
  // smuggling hides a second message (CVE-2023-51764). Postfix 3.9 answers the same.
  TARPIT_ERR_BARE_LINE_ENDING: { code: 550, enhanced: '5.5.2', text: 'Message contains bare <CR> or <LF>; use <CR><LF> line endings' },
  // RFC 1870 §6.3 and RFC 3463 X.3.4: message too big for system.
  TARPIT_ERR_MESSAGE_TOO_BIG: { code: 552, enhanced: '5.3.4', text: 'Message exceeds the size limit' },
  // RFC 5321 §4.5.3.1.10: at least 100 recipients must be accepted; more get 452.
  TARPIT_ERR_TOO_MANY_RECIPIENTS: { code: 452, enhanced: '4.5.3', text: 'Too many recipients' },
  // RFC 3463 X.7.1: delivery not authorized, message refused. The policy's reject
  // verdict; the text is the reason class (src/policy/evidence.ts REASON_TEXT), never the score.
  TARPIT_ERR_POLICY_REJECT: { code: 550, enhanced: '5.7.1', text: 'Rejected by policy' },
  // RFC 5321 §3.1: 554 instead of the 220 greeting refuses the whole session (rejectAt: connect).
  TARPIT_ERR_POLICY_REJECT_CONNECT: { code: 554, enhanced: '5.7.1', text: 'Rejected by policy' },
  // The drop verdict: 421 closes the session (RFC 5321 §4.2.2); the client may retry later.
  TARPIT_ERR_POLICY_DROP: { code: 421, enhanced: '4.7.1', text: 'Connection refused by policy' },
  // A tarpit survivor, now allowlisted, or a session the tarpit will not relay: retry later.
  TARPIT_ERR_POLICY_TEMPFAIL: { code: 451, enhanced: '4.7.1', text: 'Service temporarily unavailable, please try again later' },
  // The client's connection closed (its FIN or reset, or our own close) before the command or the message was
  // complete. Nobody hears this reply: it exists so that code and the trap can tell an outcome of the client's
  // doing from a failure of ours by code (docs/design.md §4.6), and the backend never gets the partial message.
  TARPIT_ERR_CLIENT_GONE: { code: 421, enhanced: '4.4.2', text: 'Connection closed before the transaction completed' },
  // Greylisting (issue 6): a first try of a (network, sender, recipient) triplet, or a retry too early or too late. Postgrey's words; real MTAs retry.
  TARPIT_ERR_GREYLISTED: { code: 451, enhanced: '4.7.1', text: 'Greylisted, please try again later' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;
/** A reply that passes the backend's answer through unchanged. */
export type PassThroughCode = 'TARPIT_ERR_BACKEND_REPLY';

/**
 * A refusal on its way to the client. `responseCode` and `message` follow
 * smtp-server's callback contract, so a hook can pass one to its callback as is.
 */
export class SmtpReplyError extends Error {
  override readonly name = 'SmtpReplyError';
  readonly code: ErrorCode | PassThroughCode;
  readonly reply: Reply;
  /** smtp-server writes `${responseCode} ${message}`. */
  readonly responseCode: number;

  constructor(code: ErrorCode | PassThroughCode, reply: Reply, options?: { cause?: unknown }) {
    super(replyText(reply), options);
    this.code = code;
    this.reply = reply;
    this.responseCode = reply.code;
  }

  /** The reply as wire bytes, for sockets that smtp-server does not own. */
  toWire(): string {
    return toWire(this.reply);
  }
}

export function replyError(code: ErrorCode, options?: { cause?: unknown; text?: string }): SmtpReplyError {
  const spec: ErrorSpec = ERRORS[code];
  const reply: Reply = { code: spec.code, enhanced: spec.enhanced, text: options?.text ?? spec.text };
  return new SmtpReplyError(code, reply, options?.cause === undefined ? undefined : { cause: options.cause });
}

export function isSmtpReplyError(err: unknown): err is SmtpReplyError {
  return err instanceof SmtpReplyError;
}
