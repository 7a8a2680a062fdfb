/**
 * What an SPF walk reports: typed values with a code (callers and tests
 * compare codes, never message text), the domain whose record holds the
 * term, the term as written, and a reason for people.
 *
 * Errors mean the walk could not follow something it should have (its list
 * is missing what that part would have given); warnings describe records that
 * are legal, or legal enough, but give a list less than the domain authorises
 * or that receivers may refuse.
 */
import type { SpfTermErrorCode } from './spf-record.js';

export type SpfProblemCode =
  | SpfTermErrorCode
  /** The domain (asked for, or named by include/redirect) has no `v=spf1` TXT record, or does not exist. */
  | 'no-record'
  /** More than one `v=spf1` record (RFC 7208 §4.5: permerror); none of them is followed. */
  | 'multiple-records'
  /** A lookup the walk needed failed: timeout, SERVFAIL, REFUSED… (RFC 7208 §2.6.6: temperror). */
  | 'dns-error'
  /** include/redirect back to a domain already on the path being walked. */
  | 'loop'
  /** include/redirect nested deeper than the walk follows. */
  | 'too-deep'
  /** A term that names no fixed networks (ptr, exists, a macro, exp=): the domain's senders are more than the list holds. */
  | 'unwalkable'
  /** More than 10 DNS-querying terms in one evaluation (RFC 7208 §4.6.4): strict receivers answer permerror. */
  | 'lookup-limit'
  /** An `mx` whose domain has more than 10 MX names (RFC 7208 §4.6.4). */
  | 'mx-limit'
  /** An `a` or `mx` target with no address, or an `mx` domain with no (or a null) MX. */
  | 'no-address'
  /** `+all`: the domain authorises every address; not listed. */
  | 'pass-all'
  /** A network wider than IPv4 /8 or IPv6 /16 (`ip4:0.0.0.0/1`, `a/0`): no mail provider's; not listed. */
  | 'wide-network';

export type SpfSeverity = 'error' | 'warning';

const SEVERITY: Readonly<Record<SpfProblemCode, SpfSeverity>> = {
  syntax: 'error',
  'bad-cidr': 'error',
  'duplicate-modifier': 'error',
  'no-record': 'error',
  'multiple-records': 'error',
  'dns-error': 'error',
  loop: 'error',
  'too-deep': 'error',
  unwalkable: 'warning',
  'lookup-limit': 'warning',
  'mx-limit': 'warning',
  'no-address': 'warning',
  'pass-all': 'warning',
  'wide-network': 'warning',
};

export interface SpfProblem {
  readonly code: SpfProblemCode;
  readonly severity: SpfSeverity;
  /** The domain whose record holds `term`; without a term, the domain asked for whose own record is the problem. */
  readonly domain: string;
  /** The term as written (`include:_spf.example.com`, `ip4:192.0.2.0/33`); absent when the record as a whole is the problem. */
  readonly term?: string | undefined;
  readonly reason: string;
  /** The domain asked for whose walk met this (records reached through include or redirect are walked for it). */
  readonly from: string;
}

export function spfProblem(code: SpfProblemCode, at: { domain: string; term?: string | undefined; from: string }, reason: string): SpfProblem {
  return { code, severity: SEVERITY[code], domain: at.domain, term: at.term, reason, from: at.from };
}

/**
 * `spf: DOMAIN: TERM: reason (walking FROM)`, with `warning: ` in front of
 * warnings, as `check` prints them. Text from DNS is escaped: a TXT record may
 * hold any byte, and a newline in a message would end a comment line in the
 * list file.
 */
export function problemMessage(p: SpfProblem): string {
  const where = [p.domain, ...(p.term === undefined ? [] : [p.term])].map(printable).join(': ');
  const from = p.from.toLowerCase() === p.domain.toLowerCase() ? '' : ` (walking ${printable(p.from)})`;
  return `${p.severity === 'warning' ? 'warning: ' : ''}spf: ${where}: ${printable(p.reason)}${from}`;
}

/**
 * `text` with every character that could break a line or drive a terminal
 * written as `\xNN` or `\u{NNNN}`: C0 and C1 controls, DEL, the Unicode line
 * and paragraph separators, and the bidirectional overrides that make text
 * read other than it is. A backslash is doubled, so the escapes stay unambiguous.
 */
export function printable(text: string): string {
  let out = '';
  for (const c of text) {
    const code = c.codePointAt(0) ?? 0;
    if (c === '\\') out += '\\\\';
    else if (!UNSAFE.test(c)) out += c;
    else out += code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  }
  return out;
}

const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;
