/**
 * The policy as the checks, the scorer and the tarpit read it: `policy.yaml`
 * after validation and defaults, with its list files compiled. Loaded by
 * src/policy/load.ts, frozen, and swapped whole on reload (docs/design.md §4.7), so a
 * session keeps the Policy it started with.
 *
 * Units: durations are seconds, as in the config file.
 */
import type { CidrList } from './lists/cidr-list.js';
import type { Verdict } from './evidence.js';

/** A stage at which a `reject` verdict may be answered (docs/design.md §2: RCPT keeps sender and recipient in logs). */
export type RejectStage = 'connect' | 'helo' | 'mail' | 'rcpt' | 'data';

/** One inclusive IPv4 range an answer must fall in (`127.0.0.2-127.0.0.11`, or one address, or a CIDR). */
export interface AnswerRange {
  /** As written in the file, for `explain`. */
  readonly text: string;
  /** IPv4 as unsigned 32-bit integers, inclusive. */
  readonly first: number;
  readonly last: number;
}

/** One DNSBL or DNSWL zone. */
export interface DnsZone {
  /** `zen.spamhaus.org`: queried as `<reversed address>.<zone>`. */
  readonly zone: string;
  /** Added to the score when listed; negative for an allowlist. */
  readonly weight: number;
  /** Answers that count as listed; empty means any A answer. */
  readonly answers: readonly AnswerRange[];
  /** Seconds for this zone's lookup; past it the zone counts as not listed. */
  readonly timeout: number;
}

export interface TarpitProfile {
  readonly name: string;
  /** Seconds held before each reply; 0 answers at once. No single wait above 25 s in the shipped profiles (docs/design.md §2). */
  readonly delays: {
    readonly banner: number;
    readonly helo: number;
    readonly mail: number;
    readonly rcpt: number;
    readonly data: number;
    /** Before replies to NOOP, RSET, VRFY, HELP and unknown commands (smtp-server has no hook for these). Absent: 0. */
    readonly other?: number;
  };
  /** Bytes per second at which each reply of the dialogue is trickled out (OpenBSD spamd: 1); closing replies go out whole. Absent or 0: whole replies. */
  readonly stutter?: number;
  /** 0 to 0.5: each delay is multiplied by a random factor in [1 - jitter, 1 + jitter], so bots cannot learn a fixed wait. Absent: 0. */
  readonly jitter?: number;
  /** Seconds a client may be held in all; then the session ends with the `end` reply (not allowlisted). Absent: 600. */
  readonly maxHold?: number;
  /**
   * What a client that sat every delay out gets at DATA (nothing is relayed from a hold):
   * `allowlist`: remembered in the allowlist cache and told 451 4.7.1 so its retry is relayed;
   * a reply: refused with that code and text;
   * `relay` (only with every delay but `banner` 0: the loader checks): a pass client that said nothing
   * during the greet wait is allowlisted and handed to the relay path in the same connection (issue 4);
   * one that did not get that far ends like `allowlist`.
   */
  readonly end:
    | { readonly kind: 'allowlist' }
    | { readonly kind: 'relay' }
    | { readonly kind: 'reply'; readonly code: 421 | 451 | 554; readonly text: string };
}

export interface Policy {
  /** Directory the files came from (absolute) and the main file, for messages. */
  readonly dir: string;
  readonly file: string;
  /** A score at or above a threshold gives that verdict; the highest one reached wins. */
  readonly thresholds: { readonly tarpit: number; readonly reject: number; readonly drop: number };
  readonly rejectAt: RejectStage;
  /** Profile a `tarpit` verdict holds the client with. */
  readonly tarpitProfile: TarpitProfile;
  readonly lists: {
    /** Skip every check: verdict pass. */
    readonly allow: CidrList;
    readonly block: { readonly list: CidrList; readonly weight: number };
  };
  readonly dnsbl: readonly DnsZone[];
  readonly dnswl: readonly DnsZone[];
  /** Weights for reverse DNS (FCrDNS): no PTR, or a PTR name whose A/AAAA lack the client. */
  readonly rdns: { readonly missing: number; readonly unconfirmed: number };
  readonly helo: {
    readonly notFqdn: number;
    /** `[192.0.2.1]` that is not the client's address. */
    readonly literalMismatch: number;
    /** Our own hostname or one of our addresses. */
    readonly claimsUs: number;
    readonly badSyntax: number;
  };
  readonly firstContact: {
    readonly enabled: boolean;
    /** The hold a client meets when neither the allow list, the allowlist cache nor a known-sender rule vouches for it. */
    readonly profile: TarpitProfile;
    /** Seconds after its 451 before a survivor's retry (or its network's neighbour's) counts; sooner, it is held again (issue 11). */
    readonly minRetryDelay: number;
    /** Weight of a retry sooner than `minRetryDelay`. */
    readonly earlyRetry: number;
  };
  /**
   * Senders that need no test (issue 11): no first-contact hold, no
   * greylisting, no rate weight. Each rule is one way of vouching; the
   * session names the one that did.
   */
  readonly knownSenders: {
    /** FCrDNS names ending in one of these (lower case, no leading or trailing dot). */
    readonly rdnsSuffixes: readonly string[];
    /** A score at connect below this means some check vouched for the client (a DNSWL listing). */
    readonly trustedBelow: number;
    /** Known senders' networks (`knownSenders.networks`, e.g. walked from SPF records); empty when none. */
    readonly networks: CidrList;
  };
  /** Weight for talking before our reply (before the banner, or while a reply is held). */
  readonly pregreet: number;
  readonly protocol: {
    /** A command sent before the previous reply when PIPELINING was not offered or before EHLO's reply. */
    readonly pipelining: number;
    readonly bareLf: number;
    /** HTTP verbs and other non-SMTP commands. */
    readonly nonSmtp: number;
  };
  readonly harvest: {
    /** Recipients the backend rejected (5xx) in one session or within `window` from one client group. */
    readonly rejected: number;
    readonly window: number;
    readonly weight: number;
  };
  readonly rate: {
    /** Prefix lengths that group client addresses (a /24 and a /64 by default: big senders retry from a neighbour). */
    readonly group: { readonly ipv4: number; readonly ipv6: number };
    readonly maxConcurrent: number;
    readonly maxPerMinute: number;
    readonly weight: number;
  };
  readonly allowlistCache: {
    readonly ttl: number;
    readonly maxEntries: number;
    /** A survivor's network is remembered too (for `ttl` seconds, by these prefix lengths), so a pool's neighbour is relayed. */
    readonly network: { readonly enabled: boolean; readonly ttl: number; readonly ipv4: number; readonly ipv6: number };
  };
  /**
   * The retry test at RCPT (issue 6): a clean client's first try of a
   * (network, sender, recipient) triplet gets 451 4.7.1; a retry after
   * `minDelay` and within `pendingExpiry` passes and lets its network through
   * for `passedExpiry`. Satisfies the store's GreylistSettings. Never
   * greylisted: the allow list, the allowlist cache and `knownSenders`.
   */
  readonly greylisting: {
    readonly enabled: boolean;
    readonly minDelay: number;
    readonly pendingExpiry: number;
    readonly passedExpiry: number;
    /** Prefix lengths of the triplet's network: big senders retry from another address of their pool. */
    readonly network: { readonly ipv4: number; readonly ipv6: number };
  };
  /** Per network (rate group) history of bad and delivered sessions, decayed; evidence at connect. */
  readonly reputation: {
    readonly enabled: boolean;
    /** Added once the network's decayed bad count reaches `threshold` and outnumbers its delivered count. */
    readonly weight: number;
    /** Seconds in which a network's counts halve. */
    readonly halfLife: number;
    readonly threshold: number;
  };
  readonly profiles: ReadonlyMap<string, TarpitProfile>;
}

/** The verdict for a score under a policy's thresholds. */
export function verdictFor(score: number, thresholds: Policy['thresholds']): Verdict {
  if (score >= thresholds.drop) return 'drop';
  if (score >= thresholds.reject) return 'reject';
  if (score >= thresholds.tarpit) return 'tarpit';
  return 'pass';
}
