/**
 * Forward-confirmed reverse DNS, as Postfix's smtpd decides a client's name:
 * the address's PTR names, kept only when one of them resolves (A for IPv4,
 * AAAA for IPv6) back to the client's address. The outcome doubles as the
 * XCLIENT NAME value (Postfix XCLIENT_README): the verified name,
 * `[UNAVAILABLE]` when there is none, `[TEMPUNAVAIL]` when our resolver could
 * not tell — so the backend's reject_unknown_client_hostname keeps its meaning.
 */
import { isIP } from 'node:net';
import type { AddressResult, DnsClient, NameResult } from './dns-client.js';
import { withoutTrailingDot } from './query-name.js';
import { parseIp, sameIp, type Ip } from '../../core/ip.js';
import { when, whenAll, type MaybePromise } from '../../state/maybe-promise.js';

export const NAME_UNAVAILABLE = '[UNAVAILABLE]';
export const NAME_TEMPUNAVAIL = '[TEMPUNAVAIL]';

/** PTR names checked per client: a PTR set with dozens of names is a trick, not a mail server. */
export const MAX_PTR_NAMES = 3;

/** Metrics label for every lookup made here. */
const ZONE = 'rdns';

export type FcrdnsStatus =
  /** A PTR name resolves back to the client. */
  | 'confirmed'
  /** PTR names exist, none resolves back to the client (or none is a valid hostname). */
  | 'unconfirmed'
  /** No PTR record. */
  | 'missing'
  /** Our resolver failed or timed out: nothing is known about the client. */
  | 'tempfail';

export interface Fcrdns {
  readonly status: FcrdnsStatus;
  /** The XCLIENT NAME value: the verified name without its trailing dot, or one of the bracketed markers. */
  readonly name: string;
  /** PTR names seen (trailing dots removed), for `explain` and log lines. */
  readonly ptr: readonly string[];
}

/**
 * The client's FCrDNS outcome. Answers already in the DNS cache are used at
 * once: when the PTR and every forward answer are cached the outcome comes
 * back synchronously; otherwise a promise once the missing ones are in.
 */
export function forwardConfirm(address: string | Ip, dns: DnsClient): MaybePromise<Fcrdns> {
  // Parsing folds ::ffff:192.0.2.1 to 192.0.2.1: its PTR is asked, and the A record of 192.0.2.1 confirms it.
  const ip = typeof address === 'string' ? parseIp(address) : address;
  if (!ip) return { status: 'missing', name: NAME_UNAVAILABLE, ptr: [] };
  return when(dns.peekReverse(ip) ?? dns.reverse(ip, { zone: ZONE }), (reverse) => confirm(ip, reverse, dns));
}

function confirm(ip: Ip, reverse: NameResult, dns: DnsClient): MaybePromise<Fcrdns> {
  if (reverse.kind === 'error') return { status: 'tempfail', name: NAME_TEMPUNAVAIL, ptr: [] };
  if (reverse.kind === 'nxdomain') return { status: 'missing', name: NAME_UNAVAILABLE, ptr: [] };

  const ptr = reverse.names.map(withoutTrailingDot);
  const candidates = ptr.filter(isHostname).slice(0, MAX_PTR_NAMES);
  const forward = candidates.map((name) => (ip.family === 'ipv4' ? (dns.peek4(name) ?? dns.resolve4(name, { zone: ZONE })) : (dns.peek6(name) ?? dns.resolve6(name, { zone: ZONE }))));
  return whenAll(forward, (answers) => decide(ip, ptr, candidates, answers));
}

function decide(ip: Ip, ptr: readonly string[], candidates: readonly string[], forward: readonly AddressResult[]): Fcrdns {
  // PTR order decides among several confirmed names, as the first one is what a resolver library hands Postfix.
  const confirmed = candidates.find((_, i) => {
    const f = forward[i];
    return f?.kind === 'answer' && f.addresses.some((a) => sameIp(a, ip));
  });
  if (confirmed !== undefined) return { status: 'confirmed', name: confirmed, ptr };
  if (forward.some((f) => f.kind === 'error')) return { status: 'tempfail', name: NAME_TEMPUNAVAIL, ptr };
  return { status: 'unconfirmed', name: NAME_UNAVAILABLE, ptr };
}

/** A syntactically valid hostname (RFC 1123 labels), not an address dressed as one. */
function isHostname(name: string): boolean {
  if (name.length === 0 || name.length > 253 || isIP(name) !== 0) return false;
  return name.split('.').every((label) => /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?$/.test(label));
}
