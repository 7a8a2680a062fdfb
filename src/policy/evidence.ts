/**
 * What every check returns and what the scorer adds up (docs/design.md §2): a named
 * piece of evidence with a weight and a reason an admin can read. The reason
 * class is what a refused client may be told; the score never leaves us.
 */

/** What happens to a session, in rising order of severity. */
export const VERDICTS = ['pass', 'tarpit', 'reject', 'drop'] as const;
export type Verdict = (typeof VERDICTS)[number];

/**
 * Why, in words a client may see in a 5xx ("listed on a DNS blocklist"), and a
 * low-cardinality label for metrics. Never an address, a zone's internals or a score.
 */
export const REASON_CLASSES = [
  'allowlisted',
  'blocklisted',
  'dnsbl',
  'dnswl',
  'rdns',
  'helo',
  'pregreet',
  'protocol',
  'harvest',
  'rate',
  'reputation',
  'first-contact',
] as const;
export type ReasonClass = (typeof REASON_CLASSES)[number];

export interface Evidence {
  /** The check's name as the policy file spells it (`block`, `dnsbl`, `helo`, …). */
  readonly check: string;
  /** Added to the score; negative for trust (a DNSWL listing). */
  readonly weight: number;
  /** For the admin: what was seen ("127.0.0.2 from zen.example.org", "HELO is a bare IP"). */
  readonly reason: string;
  readonly class: ReasonClass;
}

/** What the client may be told for a reason class, in a 5xx or 4xx reply. */
export const REASON_TEXT: Readonly<Record<ReasonClass, string>> = {
  allowlisted: 'Client is allowlisted',
  blocklisted: 'Client address is blocked by local policy',
  dnsbl: 'Client address is listed on a DNS blocklist',
  dnswl: 'Client address is listed on a DNS allowlist',
  rdns: 'Client address has no valid reverse DNS',
  helo: 'Client HELO name is not acceptable',
  pregreet: 'Client sent data before its turn',
  protocol: 'Client violated the SMTP protocol',
  harvest: 'Too many unknown recipients',
  rate: 'Client exceeded a connection limit',
  reputation: 'Client network has a poor reputation',
  'first-contact': 'Client has not been seen before',
};
