/**
 * What the backend hears of a client's envelope: the address bytes the client
 * sent and the MAIL parameters it declared, nothing rewritten, nothing added
 * (issue 12 item 4).
 *
 * smtp-server 3.21.6 gives `onMailFrom`/`onRcptTo` the address with its domain
 * converted to Unicode (`_parseAddressCommand`: `punycode.toUnicode(domain)`),
 * so `s@xn--bcher-kva.example` arrives as `s@bücher.example`. Forwarded like
 * that without SMTPUTF8, Postfix refuses it (501 5.1.7 Bad sender address
 * syntax) where the client's own command gets 250. Re-encoding the domain
 * would not give the client's bytes back either (its own case, its own labels),
 * so we keep the line itself: a wrapper around the connection's
 * `_parseAddressCommand` remembers, per parsed address object, the address as
 * it stood in the command. This is a private member (docs/platform-notes.md);
 * if it is missing, `captureWireAddresses` says so, the proxy forwards
 * smtp-server's form as before, and test/smtp/envelope.test.ts fails loudly.
 */
import type { SMTPServerAddress } from 'smtp-server';
import type { MailParams } from '../relay/backend-connection.js';

type ParseAddressCommand = (rawName: unknown, rawCommand: unknown) => unknown;

interface ConnectionInternals {
  _parseAddressCommand?: ParseAddressCommand;
}

/** The address as the client wrote it, by the object smtp-server handed to our hooks. */
const wireForms = new WeakMap<object, string>();

/**
 * RFC 5321 §4.1.2 and appendix C: a source route must be accepted and should
 * be ignored. smtp-server strips it with this same pattern before its checks,
 * so what we forward is exactly what it validated.
 */
const SOURCE_ROUTE = /^@[^\s,:@]+(?:,@[^\s,:@]+)*:/;

/**
 * The address inside `<…>` of a MAIL FROM or RCPT TO line, split the way
 * smtp-server splits it (the first `:` ends the verb, whitespace ends the
 * path); undefined when smtp-server would not have parsed it either.
 */
export function addressInCommand(command: Buffer | string): string | undefined {
  // smtp-server decodes the line as UTF-8 before parsing; so do we, so the two
  // agree on what the address is, and the backend gets the same UTF-8 back.
  const line = typeof command === 'string' ? command : command.toString('utf8');
  const colon = line.indexOf(':');
  if (colon === -1) return undefined;
  const path = line.slice(colon + 1).trim().split(/\s+/)[0] ?? '';
  if (!/^<[^<>]*>$/.test(path)) return undefined;
  return path.slice(1, -1).replace(SOURCE_ROUTE, '');
}

/**
 * Arranges for `connection` (an smtp-server connection, before its first
 * command) to remember each MAIL and RCPT address as sent. Returns whether
 * smtp-server's internals were as expected.
 */
export function captureWireAddresses(connection: object): boolean {
  const internals = connection as ConnectionInternals;
  const parse = internals._parseAddressCommand;
  if (typeof parse !== 'function') return false;
  internals._parseAddressCommand = function (this: unknown, rawName: unknown, rawCommand: unknown): unknown {
    const parsed = parse.call(this, rawName, rawCommand);
    if (typeof parsed === 'object' && parsed !== null && (Buffer.isBuffer(rawCommand) || typeof rawCommand === 'string')) {
      const wire = addressInCommand(rawCommand);
      if (wire !== undefined) wireForms.set(parsed, wire);
    }
    return parsed;
  };
  return true;
}

/** The address to forward and to log: the client's bytes when captured, smtp-server's form otherwise. */
export function wireAddress(address: SMTPServerAddress): string {
  return wireForms.get(address) ?? address.address;
}

/**
 * The MAIL parameters the client declared, and only those (the backend
 * connection then sends each only where the backend offers it): SIZE as
 * today; BODY only when the client said BODY= (smtp-server's envelope says
 * `7bit` when it did not, and BODY=7BIT is a claim the client never made);
 * SMTPUTF8 only when the client asked for it.
 */
export function mailParams(address: Pick<SMTPServerAddress, 'args'>): MailParams {
  const args = (address.args || {}) as Record<string, string | boolean | undefined>;
  const size = typeof args.SIZE === 'string' ? Number(args.SIZE) : undefined;
  const declared = typeof args.BODY === 'string' ? args.BODY.toUpperCase() : undefined;
  const body = declared === '8BITMIME' || declared === '7BIT' ? declared : undefined;
  return {
    ...(size !== undefined && Number.isFinite(size) ? { size } : {}),
    ...(body !== undefined ? { body } : {}),
    ...(args.SMTPUTF8 === true ? { smtputf8: true } : {}),
  };
}
