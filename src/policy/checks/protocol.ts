/**
 * Evidence for what the front door and the hold see a client do on the wire
 * (issue 3): talking before its turn (postscreen's pregreet), pipelining
 * without PIPELINING, bare LF line ends, and lines that are not SMTP at all (a
 * web scanner, a TLS or SSH client on port 25). The observers decide when
 * something happened; these constructors only say what it weighs and why.
 *
 * Each kind has its own check name (`protocol.bareLf`, …) so a caller can add
 * it once per session with `SessionPolicy.once()`: a client that ends every line in
 * bare LF has made one mistake, not fifty.
 */
import type { Stage } from '../../core/stage.js';
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';

/** Shown in reasons: a client chooses the text, so it is cut and escaped. */
const MAX_SHOWN = 40;

/** The client sent `bytes` bytes while we held our reply at `stage` (before the banner: `connect`). */
export function pregreetEvidence(stage: Stage, bytes: number, policy: Pick<Policy, 'pregreet'>): Evidence | undefined {
  if (policy.pregreet === 0) return undefined;
  const when = stage === 'connect' ? 'before the banner' : `before our reply at ${stage}`;
  return { check: 'pregreet', weight: policy.pregreet, class: 'pregreet', reason: `sent ${bytes} bytes ${when}` };
}

/** `command` arrived before the reply to the previous one, with PIPELINING not offered (or before EHLO's reply). */
export function pipeliningEvidence(command: string, policy: Pick<Policy, 'protocol'>): Evidence | undefined {
  const weight = policy.protocol.pipelining;
  if (weight === 0) return undefined;
  return {
    check: 'protocol.pipelining',
    weight,
    class: 'protocol',
    reason: `sent ${show(verbOf(command))} before our reply without PIPELINING`,
  };
}

/** A command line ended in LF without CR (RFC 5321 §2.3.8). */
export function bareLfEvidence(policy: Pick<Policy, 'protocol'>): Evidence | undefined {
  const weight = policy.protocol.bareLf;
  if (weight === 0) return undefined;
  return { check: 'protocol.bareLf', weight, class: 'protocol', reason: 'command line ended in a bare LF' };
}

/** `command` is a line that `classifyCommandLine` calls non-SMTP. */
export function nonSmtpEvidence(command: string, policy: Pick<Policy, 'protocol'>): Evidence | undefined {
  const weight = policy.protocol.nonSmtp;
  if (weight === 0) return undefined;
  return { check: 'protocol.nonSmtp', weight, class: 'protocol', reason: `sent non-SMTP ${show(command)}` };
}

/**
 * SMTP verbs from RFC 5321 and its service extensions, plus the proxies' own
 * (XCLIENT, XFORWARD). A client that types a verb wrong is still an SMTP
 * client: anything not recognised as another protocol counts as `smtp` and is
 * left to the server's 500, because `nonSmtp` weighs enough to drop.
 */
const SMTP_VERBS = new Set([
  'HELO', 'EHLO', 'LHLO', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP',
  'STARTTLS', 'AUTH', 'ETRN', 'ATRN', 'TURN', 'SEND', 'SOML', 'SAML', 'XCLIENT', 'XFORWARD', 'XEXCH50',
]); // prettier-ignore

/** HTTP methods (RFC 9110, WebDAV) and HTTP/2's connection preface `PRI * HTTP/2.0`. */
const HTTP_METHODS = new Set([
  'GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'PRI',
  'PROPFIND', 'PROPPATCH', 'MKCOL', 'COPY', 'MOVE', 'LOCK', 'UNLOCK',
]); // prettier-ignore

/** POP3 commands a client opens with (RFC 1939, RFC 2449); none is an SMTP verb. */
const POP3_OPENERS = new Set(['USER', 'PASS', 'APOP', 'CAPA', 'STLS', 'STAT', 'UIDL', 'RETR']);

/** IMAP: a tag, then a command only IMAP has (RFC 9051). */
const IMAP_RE = /^\S+ (?:CAPABILITY|LOGIN|AUTHENTICATE|SELECT|EXAMINE|LOGOUT)(?: |$)/i;

/**
 * Whether a command line (CRLF or LF already stripped or not) is SMTP or
 * clearly another protocol: an HTTP request line, POP3 or IMAP commands, an
 * SSH banner, or binary (a TLS ClientHello starts `\x16\x03`, an RDP
 * connection `\x03\x00`): SMTP commands start with a letter.
 */
export function classifyCommandLine(line: string): 'smtp' | 'non-smtp' {
  const text = line.replace(/\r?\n$/, '');
  if (text === '') return 'smtp';
  const first = text.charCodeAt(0);
  // Control bytes (tab aside) or non-ASCII opening a line: a binary protocol.
  if ((first < 0x20 && first !== 0x09) || first >= 0x7f) return 'non-smtp';
  const space = text.indexOf(' ');
  const verb = (space === -1 ? text : text.slice(0, space)).toUpperCase();
  if (SMTP_VERBS.has(verb)) return 'smtp';
  if (HTTP_METHODS.has(verb) || /\sHTTP\/\d(?:\.\d)?$/i.test(text)) return 'non-smtp';
  if (POP3_OPENERS.has(verb)) return 'non-smtp';
  if (text.startsWith('SSH-')) return 'non-smtp';
  if (IMAP_RE.test(text)) return 'non-smtp';
  return 'smtp';
}

/** The verb of a command line, for a reason (arguments may carry addresses). */
function verbOf(command: string): string {
  const text = command.trim();
  const space = text.indexOf(' ');
  return space === -1 ? text : text.slice(0, space);
}

/** Client text for a reason: quoted with escapes (JSON), cut to MAX_SHOWN characters. */
function show(text: string): string {
  const trimmed = text.replace(/\r?\n$/, '');
  return JSON.stringify(trimmed.length > MAX_SHOWN ? `${trimmed.slice(0, MAX_SHOWN)}…` : trimmed);
}
