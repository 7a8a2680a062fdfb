/**
 * DNSBL/DNSWL answer filters as the policy file writes them: one address
 * (`127.0.0.2`), an inclusive range (`127.0.0.2-127.0.0.11`) or a CIDR
 * (`127.0.0.0/24`). IPv4 only: a list answers with A records. Lists encode
 * what they mean in the answer (Spamhaus: 127.0.0.2-11 listings,
 * 127.255.255.x "you are querying through a public resolver"), so counting
 * only the listing codes keeps an error answer from blocking every client.
 */
import net from 'node:net';
import { ipv4ToUint, uintToIpv4 } from '../../core/ip.js';
import type { AnswerRange } from '../spec.js';

export class AnswerRangeError extends Error {
  override readonly name = 'AnswerRangeError';
  constructor(
    readonly text: string,
    readonly reason: string,
  ) {
    super(`${JSON.stringify(text)}: ${reason}`);
  }
}

/** A parsed range and, for a CIDR written with host bits set, a note the loader passes on. */
export interface ParsedAnswerRange {
  readonly range: AnswerRange;
  readonly warning: string | undefined;
}

export function parseAnswerRange(text: string): ParsedAnswerRange {
  const fail = (reason: string): never => {
    throw new AnswerRangeError(text, reason);
  };
  const value = text.trim();
  const dash = value.indexOf('-');
  const slash = value.indexOf('/');
  if (dash !== -1 && slash !== -1) fail('write a range (a-b) or a CIDR (a/n), not both');

  if (dash !== -1) {
    const first = ipv4ToUint(value.slice(0, dash).trim()) ?? fail(`not an IPv4 address before "-"${ipv6Hint(value.slice(0, dash).trim())}`);
    const last = ipv4ToUint(value.slice(dash + 1).trim()) ?? fail(`not an IPv4 address after "-"${ipv6Hint(value.slice(dash + 1).trim())}`);
    if (first > last) fail('the range runs backwards (first address above the last)');
    return { range: Object.freeze({ text: value, first, last }), warning: undefined };
  }

  if (slash !== -1) {
    const base = ipv4ToUint(value.slice(0, slash)) ?? fail(`not an IPv4 address before "/"${ipv6Hint(value.slice(0, slash))}`);
    const prefixText = value.slice(slash + 1);
    if (!/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) fail(`bad prefix length "/${prefixText}" (0-32)`);
    const prefix = Number(prefixText);
    const size = 2 ** (32 - prefix);
    const first = base - (base % size);
    const warning = first === base ? undefined : `host bits set in ${value}; matching the whole /${prefix} (${uintToIpv4(first)}/${prefix})`;
    return { range: Object.freeze({ text: value, first, last: first + size - 1 }), warning };
  }

  const address = ipv4ToUint(value) ?? fail(`not an IPv4 address, a range a-b or a CIDR${ipv6Hint(value)}`);
  return { range: Object.freeze({ text: value, first: address, last: address }), warning: undefined };
}

/** Whether an A answer counts under a zone's filter; an empty filter counts every answer. */
export function answerMatches(ranges: readonly AnswerRange[], address: string): boolean {
  if (ranges.length === 0) return true;
  const n = ipv4ToUint(address);
  return n !== undefined && ranges.some((r) => n >= r.first && n <= r.last);
}

function ipv6Hint(text: string): string {
  return net.isIPv6(text) ? ' (DNSBL answers are A records: IPv4 only)' : '';
}
