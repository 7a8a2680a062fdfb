/**
 * Building the XCLIENT command (Postfix XCLIENT_README) and the EHLO argument
 * that follows it. Pure functions: what the backend learns about the client
 * is decided here and nowhere else, because a wrong address here turns the
 * backend into an open relay (docs/design.md §1).
 */
import { isIPv4, isIPv6 } from 'node:net';

/** What the backend must learn about the client (Postfix XCLIENT attributes). */
export interface ClientIdentity {
  /** The client's IP address as the socket reports it (IPv4, IPv6 or IPv4-mapped IPv6). */
  address: string;
  /** The client's TCP source port. */
  port: number;
  /** Verified (forward-confirmed) client hostname; absent means `[UNAVAILABLE]`. */
  name?: string;
  /** The name the client gave in HELO/EHLO; absent means the address literal is sent. */
  helo?: string;
  /** SMTP when the client said HELO, ESMTP when it said EHLO. */
  proto: 'SMTP' | 'ESMTP';
}

/** The XCLIENT attributes we send, in this order, when the backend lists them. */
const XCLIENT_ATTRIBUTES = ['ADDR', 'NAME', 'PORT', 'PROTO'] as const;

const MAPPED_V4_RE = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i;

/** `::ffff:1.2.3.4` (a dual-stack listener's view of an IPv4 client) becomes `1.2.3.4`. */
function unmapIPv4(address: string): string {
  const m = MAPPED_V4_RE.exec(address);
  return m?.[1] !== undefined && isIPv4(m[1]) ? m[1] : address;
}

/**
 * RFC 3461 §4 xtext: bytes outside 33..126, and `+` and `=`, become `+XX`
 * (upper-case hex); Postfix decodes XCLIENT values this way.
 */
export function xtextEncode(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    if (byte < 33 || byte > 126 || byte === 0x2b || byte === 0x3d) {
      out += '+' + byte.toString(16).toUpperCase().padStart(2, '0');
    } else {
      out += String.fromCharCode(byte);
    }
  }
  return out;
}

/** The XCLIENT ADDR value: Postfix wants `IPV6:` before an IPv6 address (bare form → 501). */
export function xclientAddress(address: string): string {
  const plain = unmapIPv4(address);
  if (isIPv4(plain)) return plain;
  if (isIPv6(plain)) return `IPV6:${plain}`;
  throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

/** RFC 5321 §4.1.3 address literal for EHLO: `[192.0.2.1]` or `[IPv6:2001:db8::1]`. */
export function addressLiteral(address: string): string {
  const plain = unmapIPv4(address);
  if (isIPv4(plain)) return `[${plain}]`;
  if (isIPv6(plain)) return `[IPv6:${plain}]`;
  throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
}

/**
 * The XCLIENT command line (without CRLF), sending only the attributes the
 * backend listed in its EHLO reply (`advertised`, upper-case), because Postfix
 * answers 501 to an attribute it does not know.
 */
export function buildXclientCommand(client: ClientIdentity, advertised: readonly string[]): string {
  const values: Record<(typeof XCLIENT_ATTRIBUTES)[number], string> = {
    ADDR: xclientAddress(client.address),
    // Postfix: [UNAVAILABLE] means "no verified name", the same as its own lookup failing.
    NAME: client.name !== undefined && client.name !== '' ? client.name : '[UNAVAILABLE]',
    PORT: String(client.port),
    PROTO: client.proto,
  };
  const parts = XCLIENT_ATTRIBUTES.filter((attr) => advertised.includes(attr)).map(
    (attr) => `${attr}=${xtextEncode(values[attr])}`,
  );
  return ['XCLIENT', ...parts].join(' ');
}

/** The EHLO argument after XCLIENT: the client's own HELO name, else its address literal. */
export function heloArgument(client: ClientIdentity): string {
  const helo = client.helo?.trim();
  return helo !== undefined && helo !== '' ? helo : addressLiteral(client.address);
}
