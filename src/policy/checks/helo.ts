/**
 * HELO/EHLO sanity (issue 3), the checks Postfix admins know as
 * reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname and "HELO with
 * my own name". A real MTA announces its own fully qualified name or, lacking
 * one, the literal of its own address; bots announce `localhost`, a bare IP,
 * a random word, or the receiving server's name.
 *
 * The argument is judged against RFC 5321 §4.1.2 (Domain, address-literal)
 * with the length limits of §4.5.3.1.2 (255 octets) and RFC 1035 (63 per label).
 * Two deliberate leniencies: one trailing dot (an absolute name, `mx.example.org.`,
 * is still that host; Postfix strips it too) and address literals with leading
 * zeros, which the Snum grammar allows.
 */
import net from 'node:net';

import { withoutTrailingDot } from '../dns/query-name.js';
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';
import { type Ip, formatIp, parseIp, sameIp } from '../../core/ip.js';

export interface Us {
  /** Our hostname, as the banner announces it. */
  readonly hostname: string;
  /** The addresses we accept mail on. */
  readonly addresses: readonly string[];
}

/** RFC 5321 §4.5.3.1.2. */
const MAX_DOMAIN = 255;
/** RFC 1035 §2.3.4. */
const MAX_LABEL = 63;
/** Shown in reasons: a client chooses the text, so it is cut and escaped. */
const MAX_SHOWN = 64;

/** Let-dig [Ldh-str]: letters, digits, hyphens, not starting or ending with a hyphen. */
const LABEL_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/;
const SNUM_RE = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
/**
 * Top-level names that are never a public host: an unconfigured box says
 * `localhost.localdomain` or `pc.local`. Kept to names reserved for exactly
 * that (RFC 6761, RFC 6762) plus the Linux installers' default `localdomain`;
 * `test` and `example` stay out because documentation and test suites use them.
 */
const LOCAL_TLDS = new Set(['localhost', 'localdomain', 'local', 'invalid']);

type Weights = Policy['helo'];

/**
 * Evidence against a HELO/EHLO argument; empty when it looks like a real MTA's.
 * Checks with weight 0 give nothing. Claims to be us are not held against a
 * client connecting from one of our own addresses: that client is us (a
 * local process, a health check).
 */
export function checkHelo(helo: string, clientAddress: string, us: Us, weights: Weights): Evidence[] {
  const out: Evidence[] = [];
  const add = (key: keyof Weights, reason: string): void => {
    const weight = weights[key];
    if (weight !== 0) out.push({ check: `helo.${key}`, weight, class: 'helo', reason });
  };
  const name = helo.trim();
  const shown = show(name);
  const client = parseIp(clientAddress);
  const clientIsUs = client !== undefined && us.addresses.some((a) => sameIp(a, client));
  const claimsOurAddress = (ip: Ip): boolean => !clientIsUs && us.addresses.some((a) => sameIp(a, ip));

  if (name.startsWith('[')) {
    const literal = parseLiteral(name);
    if (literal === undefined) {
      add('badSyntax', `HELO ${shown} is not a valid address literal`);
      return out;
    }
    if (client !== undefined && !sameIp(literal, client)) {
      add('literalMismatch', `HELO ${shown} is not the client's address ${formatIp(client)}`);
    }
    if (claimsOurAddress(literal)) add('claimsUs', `HELO ${shown} is one of our addresses`);
    return out;
  }

  const bareIp = net.isIP(name) === 0 ? undefined : parseIp(name);
  if (bareIp !== undefined) {
    add('badSyntax', `HELO ${shown} is an IP address without brackets`);
    if (claimsOurAddress(bareIp)) add('claimsUs', `HELO ${shown} is one of our addresses`);
    return out;
  }

  const problem = domainProblem(name);
  if (problem !== undefined) {
    add('badSyntax', `HELO ${shown} is not a valid hostname: ${problem}`);
    return out;
  }

  const absolute = withoutTrailingDot(name);
  const labels = absolute.split('.');
  const tld = (labels[labels.length - 1] ?? '').toLowerCase();
  if (labels.length < 2) add('notFqdn', `HELO ${shown} is not a fully qualified domain name`);
  else if (LOCAL_TLDS.has(tld)) add('notFqdn', `HELO ${shown} is a local name, not a public one`);
  // A generic name is no claim to be us, even on a box that calls itself `localhost` too.
  else if (!clientIsUs && sameName(absolute, us.hostname)) add('claimsUs', `HELO ${shown} is our own hostname`);
  return out;
}

/** Why `name` is not an RFC 5321 Domain (one trailing dot allowed), or undefined when it is one. */
function domainProblem(name: string): string | undefined {
  if (name === '') return 'empty';
  if (name.length > MAX_DOMAIN) return `longer than ${MAX_DOMAIN} characters`;
  if (/[^\x00-\x7f]/.test(name)) return 'not ASCII (an international name goes as xn-- A-labels)';
  const absolute = withoutTrailingDot(name);
  const labels = absolute.split('.');
  for (const label of labels) {
    if (label === '') return 'empty label';
    if (label.length > MAX_LABEL) return `label longer than ${MAX_LABEL} characters`;
    if (!LABEL_RE.test(label)) {
      return label.includes('_') ? 'underscore in a label' : `bad characters in label "${show(label, 32, false)}"`;
    }
  }
  // RFC 1123 §2.1 / RFC 3696 §2: a top-level label is never all digits, so
  // `1.2.3` or `host.123` cannot be a host name (and could be taken for an address).
  if (/^\d+$/.test(labels[labels.length - 1] ?? '')) return 'all-numeric top-level label';
  return undefined;
}

/** `[192.0.2.1]` or `[IPv6:2001:db8::1]` (tag case-insensitive, RFC 5234 §2.3), else undefined. */
function parseLiteral(text: string): Ip | undefined {
  if (!text.endsWith(']') || text.length < 3) return undefined;
  const inner = text.slice(1, -1);
  const v4 = SNUM_RE.exec(inner);
  if (v4 !== null) {
    const octets = v4.slice(1).map(Number);
    if (octets.some((n) => n > 255)) return undefined;
    return { family: 'ipv4', bytes: Uint8Array.from(octets) };
  }
  if (inner.slice(0, 5).toLowerCase() !== 'ipv6:') return undefined;
  const v6 = inner.slice(5);
  // A zone id names one of the client's interfaces: meaningless to us, and not in the grammar.
  if (v6.includes('%') || !net.isIPv6(v6)) return undefined;
  return parseIp(v6);
}

function sameName(a: string, b: string): boolean {
  const bb = withoutTrailingDot(b);
  return bb !== '' && a.toLowerCase() === bb.toLowerCase();
}

/** Client text for a reason: quoted with escapes (JSON), cut to `max` characters. */
function show(text: string, max = MAX_SHOWN, quoted = true): string {
  const cut = text.length > max ? `${text.slice(0, max)}…` : text;
  const json = JSON.stringify(cut);
  return quoted ? json : json.slice(1, -1);
}
