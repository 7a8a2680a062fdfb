/**
 * The JSON Schema (draft-07) of `policies/policy.yaml`. Defaults live here, so
 * an empty policy file behaves like the shipped one (less its list files);
 * `policies/policy.schema.json` is generated from POLICY_SCHEMA for editors
 * (`npm run schema`) and test/policy/schema.test.ts fails when they drift.
 *
 * The schema checks shapes and ranges; what needs more than one value or a
 * file (threshold order, profile names, list files, DNS names, answer ranges)
 * is checked by src/policy/load.ts, which reports both kinds together.
 *
 * Units: durations are seconds.
 */

const WEIGHT = { type: 'number', minimum: -1000, maximum: 1000 } as const;
const THRESHOLD = { type: 'number', exclusiveMinimum: 0, maximum: 1000 } as const;
/** RFC 5321 §4.5.3.2: a client waits at most 5 minutes for most replies, so no hold may be longer. */
const DELAY = { type: 'number', minimum: 0, maximum: 300, default: 0 } as const;
const FILE_NAME = { type: 'string', minLength: 1, description: 'List file name, relative to the policy directory.' } as const;
const PROFILE_NAME = { type: 'string', minLength: 1 } as const;

/**
 * The big mailbox providers' and ESPs' outbound pools, by the domain their
 * forward-confirmed reverse DNS names end in (as their Received lines show).
 * They retry from any address of a large pool, so the first-contact hold
 * would meet them again and again. policies/policy.yaml lists the same, each
 * with a comment; a test keeps the two equal.
 */
export const KNOWN_SENDER_SUFFIXES = [
  'google.com',
  'outlook.com',
  'yahoo.com',
  'icloud.com',
  'me.com',
  'amazonses.com',
  'sendgrid.net',
  'mandrillapp.com',
  'mcsv.net',
  'rsgsv.net',
  'mailgun.net',
  'mtasv.net',
  'sparkpostmail.com',
  'zoho.com',
  'zoho.eu',
  'messagingengine.com',
  'protonmail.ch',
  'proton.ch',
];

const DNS_ZONE = {
  type: 'object',
  additionalProperties: false,
  required: ['zone', 'weight'],
  properties: {
    zone: { type: 'string', minLength: 1, maxLength: 253, description: 'DNS zone queried as <reversed client address>.<zone>, e.g. zen.spamhaus.org.' },
    weight: { ...WEIGHT, description: 'Added to the score when the client is listed (negative for an allowlist).' },
    answers: {
      type: 'array',
      items: { type: 'string', minLength: 1 },
      default: [],
      description: 'A records that count as listed: an address (127.0.0.2), a range (127.0.0.2-127.0.0.11) or a CIDR (127.0.0.0/24). Empty: any answer. Lists answer 127.255.255.x for errors such as queries from a public resolver; leave those out.',
    },
    timeout: { type: 'number', exclusiveMinimum: 0, maximum: 30, default: 2, description: 'Seconds to wait for this zone; a slower lookup counts as not listed.' },
  },
} as const;

const ZONES = (what: string) =>
  ({
    type: 'array',
    items: DNS_ZONE,
    default: [],
    description: `${what}, looked up in parallel through the resolver in the configuration file (dns.servers).`,
  }) as const;

const PROFILE = {
  type: 'object',
  additionalProperties: false,
  required: ['end'],
  properties: {
    delays: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Seconds held before each reply; 0 answers at once. At most 300 s each (RFC 5321 §4.5.3.2); some real MTAs give up on a greeting after 30 s.',
      properties: {
        banner: { ...DELAY, description: 'Before the 220 greeting.' },
        helo: { ...DELAY, description: 'Before the reply to EHLO or HELO.' },
        mail: { ...DELAY, description: 'Before the reply to MAIL FROM.' },
        rcpt: { ...DELAY, description: 'Before the reply to each RCPT TO.' },
        data: { ...DELAY, description: 'Before the reply to DATA. At most 120 s with jitter and stutter (RFC 5321 §4.5.3.2.5).' },
        other: { ...DELAY, description: 'Before the replies to NOOP, RSET, VRFY, HELP and unknown commands.' },
      },
    },
    stutter: {
      type: 'number',
      minimum: 0,
      maximum: 1000,
      default: 0,
      description:
        'Bytes per second at which each reply of the dialogue is trickled out (OpenBSD spamd: 1); 0: whole replies; at most 1000 (one byte per millisecond timer tick). Closing replies go out whole. A delay plus the time to trickle its longest reply must stay within what a patient MTA waits (RFC 5321 §4.5.3.2).',
    },
    jitter: {
      type: 'number',
      minimum: 0,
      maximum: 0.5,
      default: 0,
      description: 'Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]; 0: exact delays. The longest delay times (1 + jitter) must stay within RFC 5321 §4.5.3.2.',
    },
    maxHold: {
      type: 'number',
      exclusiveMinimum: 0,
      maximum: 86400,
      default: 600,
      description: 'Seconds a client may be held in all; then the session ends with the `end` reply (the client is not allowlisted).',
    },
    end: {
      description:
        'What a client that sat every delay out gets at DATA; nothing is relayed from a hold. `allowlist`: remembered in the allowlist cache and told 451 4.7.1, so its retry is relayed. `relay` (every delay but banner 0): a client that said nothing during the greet wait is allowlisted and relayed in the same connection. Or a reply that refuses it: {reply: 421|451|554, text}.',
      anyOf: [
        { const: 'allowlist' },
        { const: 'relay' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['reply', 'text'],
          properties: {
            reply: { enum: [421, 451, 554], description: '421 closes, 451 asks to retry later, 554 refuses for good.' },
            text: {
              type: 'string',
              minLength: 1,
              maxLength: 400,
              pattern: '^[\\x20-\\x7e]+$',
              description: 'Reply text after the code, printable ASCII on one line, e.g. "4.7.1 Service temporarily unavailable, try again later".',
            },
          },
        },
      ],
    },
  },
} as const;

export const POLICY_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://smtp-tarpit.invalid/schema/policy.json',
  title: 'smtp-tarpit policy',
  description: 'Checks add their weight to a client\'s score as evidence arrives; the score picks the verdict. Durations are seconds.',
  type: 'object',
  additionalProperties: false,
  properties: {
    verdicts: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Score thresholds, tarpit <= reject <= drop; the highest one reached wins. Below tarpit the client passes.',
      properties: {
        tarpit: { ...THRESHOLD, default: 3, description: 'From this score the client is held with the `tarpit` profile.' },
        reject: { ...THRESHOLD, default: 8, description: 'From this score the client is refused with 5xx at the `rejectAt` stage.' },
        drop: { ...THRESHOLD, default: 15, description: 'From this score the client gets 421 and the connection is closed.' },
        rejectAt: {
          enum: ['connect', 'helo', 'mail', 'rcpt', 'data'],
          default: 'rcpt',
          description: 'Stage at which a rejected client gets its 5xx; rcpt keeps sender and recipient in the logs.',
        },
      },
    },
    lists: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Address lists: one IPv4 or IPv6 address or CIDR per line, # comments, like a Postfix cidr table without the action.',
      properties: {
        allow: {
          description: 'Trusted clients: no checks, no delays (like postscreen_access_list permit). A file name, or {file}. Absent: nobody.',
          anyOf: [FILE_NAME, { type: 'object', additionalProperties: false, required: ['file'], properties: { file: FILE_NAME } }],
        },
        block: {
          type: 'object',
          additionalProperties: false,
          required: ['file'],
          description: 'Always suspicious clients. Absent: nobody.',
          properties: {
            file: FILE_NAME,
            weight: { ...WEIGHT, default: 5, description: 'Added to the score of a listed client.' },
          },
        },
      },
    },
    dnsbl: ZONES('DNS blocklists'),
    dnswl: ZONES('DNS allowlists (negative weights)'),
    rdns: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Reverse DNS of the client address (FCrDNS).',
      properties: {
        missing: { ...WEIGHT, default: 2, description: 'No PTR record.' },
        unconfirmed: { ...WEIGHT, default: 1, description: 'The PTR name does not resolve back to the client address.' },
      },
    },
    helo: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The name the client gives in EHLO or HELO.',
      properties: {
        notFqdn: { ...WEIGHT, default: 1, description: 'Not a fully qualified domain name ("localhost", "mypc").' },
        literalMismatch: { ...WEIGHT, default: 2, description: 'An address literal ([192.0.2.1]) that is not the client address.' },
        claimsUs: { ...WEIGHT, default: 5, description: 'Our own hostname or one of our addresses.' },
        badSyntax: { ...WEIGHT, default: 3, description: 'Neither a hostname nor an address literal.' },
      },
    },
    pregreet: { ...WEIGHT, default: 8, description: 'Talking before the banner or before a held reply.' },
    protocol: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'SMTP protocol violations, like postscreen\'s deep protocol tests.',
      properties: {
        pipelining: { ...WEIGHT, default: 5, description: 'Commands sent ahead when PIPELINING was not offered, or before the EHLO reply.' },
        bareLf: { ...WEIGHT, default: 2, description: 'Command lines ending in LF alone.' },
        nonSmtp: { ...WEIGHT, default: 15, description: 'HTTP verbs and other non-SMTP commands.' },
      },
    },
    harvest: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Dictionary attacks on recipients.',
      properties: {
        rejected: { type: 'integer', minimum: 1, default: 5, description: 'Recipients the backend refused (5xx)...' },
        window: { type: 'number', exclusiveMinimum: 0, maximum: 86400, default: 600, description: '...in one session or within this many seconds (at most a day) from one client group.' },
        weight: { ...WEIGHT, default: 8, description: 'Added to the score of a client that gets there.' },
      },
    },
    rate: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Sessions per client group, like Postfix smtpd_client_connection_count_limit and smtpd_client_connection_rate_limit.',
      properties: {
        group: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Prefix lengths that count client addresses together: big senders retry from a neighbour.',
          properties: {
            ipv4: { type: 'integer', minimum: 0, maximum: 32, default: 24, description: 'IPv4 prefix length: 24 counts a /24 as one client, 32 each address alone.' },
            ipv6: { type: 'integer', minimum: 0, maximum: 128, default: 64, description: 'IPv6 prefix length: 64 counts a /64 (one site) as one client.' },
          },
        },
        maxConcurrent: { type: 'integer', minimum: 1, default: 10, description: 'Sessions open at once per group.' },
        maxPerMinute: { type: 'integer', minimum: 1, default: 60, description: 'New sessions per minute per group.' },
        weight: { ...WEIGHT, default: 3, description: 'Added to the score of a client over either limit.' },
      },
    },
    firstContact: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'A client that neither the allow list, the allowlist cache nor a knownSenders rule vouches for is held before it can deliver; it sits the hold out once, and its retry is relayed.',
      properties: {
        enabled: { type: 'boolean', default: true, description: 'false: unknown clients are only scored, not held.' },
        profile: { ...PROFILE_NAME, default: 'first-contact', description: 'The profile (under `profiles`) that holds a first contact.' },
        minRetryDelay: {
          type: 'number',
          minimum: 0,
          maximum: 86400,
          default: 60,
          description:
            'Seconds after its 451 before a survivor\'s retry is relayed (and a neighbour\'s, through its network\'s pass). Sooner, it is held again: real MTAs retry from their queue after minutes (Postfix: minimal_backoff_time, 300 s), a bot that sat the hold out comes straight back. 0: any retry counts.',
        },
        earlyRetry: { ...WEIGHT, default: 1, description: 'Added to the score of a client that comes back sooner than minRetryDelay after its 451.' },
      },
    },
    allowlistCache: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Clients that passed skip the first-contact hold and the DNS checks until their entry expires.',
      properties: {
        ttl: { type: 'number', exclusiveMinimum: 0, maximum: 31536000, default: 604800, description: 'Seconds an entry lives (604800: 7 days; at most a year).' },
        maxEntries: {
          type: 'integer',
          minimum: 1,
          maximum: 10000000,
          default: 100000,
          description: 'Most entries remembered, clients and networks together (memory is bounded by it); the least recently seen go first.',
        },
        network: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description:
            'A survivor\'s network is remembered too, so a pool\'s retry from a neighbour address is relayed at once (big senders retry from another address of their pool). Not for a network whose bad sessions outnumber its delivered ones.',
          properties: {
            enabled: { type: 'boolean', default: true, description: 'false: only the exact address that sat the hold out is remembered.' },
            ttl: { type: 'number', exclusiveMinimum: 0, maximum: 31536000, default: 86400, description: 'Seconds a network stays remembered (86400: a day); shorter than the address\'s.' },
            ipv4: { type: 'integer', minimum: 8, maximum: 32, default: 24, description: 'IPv4 prefix length of the network (24: a /24).' },
            ipv6: { type: 'integer', minimum: 16, maximum: 128, default: 64, description: 'IPv6 prefix length of the network (64: one site).' },
          },
        },
      },
    },
    knownSenders: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'Senders that need no test: they skip the first-contact hold and greylisting and are not weighed by the rate limits, so their first message is relayed at once. Everything else still counts (block list, DNSBL, HELO, protocol). For partners that must never be checked, use lists.allow.',
      properties: {
        rdnsSuffixes: {
          type: 'array',
          items: { type: 'string', minLength: 1, maxLength: 253 },
          default: KNOWN_SENDER_SUFFIXES,
          description:
            'Forward-confirmed reverse DNS names under one of these domains (google.com covers mail-wr1-f41.google.com): only the domain\'s owner can make a name under it resolve to an address, so a confirmed name cannot be faked.',
        },
        trustedBelow: { type: 'number', minimum: -1000, maximum: 1000, default: 0, description: 'A client whose score at connect is below this is known: some check vouched for it (a DNSWL\'s negative weight).' },
        networks: {
          ...FILE_NAME,
          description: 'A list file of known senders\' networks (one address or CIDR per line), e.g. made by `smtp-tarpit allowlist spf google.com outlook.com …`. Absent: none.',
        },
      },
    },
    greylisting: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description:
        'The retry test at RCPT, like Postgrey or OpenBSD spamd: a clean client\'s first try of a (network, sender, recipient) triplet gets 451 4.7.1; its retry after minDelay and before pendingExpiry is relayed and lets its network through for passedExpiry.',
      properties: {
        enabled: { type: 'boolean', default: false, description: 'Off unless the admin turns it on: it delays first mail from every new sender.' },
        minDelay: {
          type: 'number',
          minimum: 0,
          maximum: 86400,
          default: 300,
          description: 'Seconds before a retry is accepted (300: Postgrey\'s 5 min, and Postfix retries after minimal_backoff_time = 300 s; spamd waits 25 min).',
        },
        pendingExpiry: {
          type: 'number',
          exclusiveMinimum: 0,
          maximum: 2592000,
          default: 14400,
          description: 'Seconds a first try waits for its retry before it is forgotten (14400: spamd\'s 4 h).',
        },
        passedExpiry: {
          type: 'number',
          exclusiveMinimum: 0,
          maximum: 31536000,
          default: 3024000,
          description: 'Seconds a network that passed is let through without greylisting (3024000: 35 days, Postgrey\'s --max-age; spamd keeps 36), so a monthly sender stays known.',
        },
        network: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Prefix lengths of the triplet\'s network: big senders retry from another address of their pool.',
          properties: {
            ipv4: { type: 'integer', minimum: 0, maximum: 32, default: 24, description: 'IPv4 prefix length (24, as Postgrey\'s --lookup-by-subnet).' },
            ipv6: { type: 'integer', minimum: 0, maximum: 128, default: 64, description: 'IPv6 prefix length (64: one site).' },
          },
        },
        exempt: {
          type: 'object',
          additionalProperties: false,
          description: 'Deprecated: moved to knownSenders, which spares the same clients the first-contact hold too. Still read when knownSenders is not written, with a warning.',
          properties: {
            rdnsSuffixes: {
              type: 'array',
              items: { type: 'string', minLength: 1, maxLength: 253 },
              description: 'Deprecated: knownSenders.rdnsSuffixes.',
            },
            trustedBelow: { type: 'number', minimum: -1000, maximum: 1000, description: 'Deprecated: knownSenders.trustedBelow.' },
          },
        },
      },
    },
    reputation: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Each client network\'s (rate.group) history: sessions refused, dropped or hung up while held count bad, delivered ones good; both halve every halfLife.',
      properties: {
        enabled: { type: 'boolean', default: true, description: 'false: history is still kept, but never weighs.' },
        weight: { ...WEIGHT, default: 2, description: 'Added to the score once the network\'s bad count reaches threshold and outnumbers its delivered count.' },
        threshold: { type: 'number', exclusiveMinimum: 0, maximum: 1000000, default: 5, description: 'Decayed bad sessions from which a network\'s history weighs.' },
        halfLife: { type: 'number', exclusiveMinimum: 0, maximum: 31536000, default: 86400, description: 'Seconds in which a network\'s counts halve (86400: a day).' },
      },
    },
    tarpit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'The hold a `tarpit` verdict gets.',
      properties: {
        profile: { ...PROFILE_NAME, default: 'tarpit', description: 'The profile (under `profiles`) that holds a client with the tarpit verdict.' },
      },
    },
    profiles: {
      type: 'object',
      propertyNames: { pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$' },
      additionalProperties: PROFILE,
      description: 'Named holds: per-stage delays and how the hold ends. Names: letters, digits, - _ and dots.',
      default: {
        'first-contact': { delays: { banner: 12, helo: 12, mail: 12, rcpt: 12, data: 12 }, end: 'allowlist' },
        tarpit: {
          delays: { banner: 25, helo: 25, mail: 25, rcpt: 25, data: 25 },
          end: { reply: 451, text: '4.7.1 Service temporarily unavailable, try again later' },
        },
      },
    },
  },
} as const;

/** What policy.yaml holds once the schema accepted it and filled its defaults. */
export interface RawPolicy {
  verdicts: { tarpit: number; reject: number; drop: number; rejectAt: 'connect' | 'helo' | 'mail' | 'rcpt' | 'data' };
  lists: { allow?: string | { file: string }; block?: { file: string; weight: number } };
  dnsbl: RawZone[];
  dnswl: RawZone[];
  rdns: { missing: number; unconfirmed: number };
  helo: { notFqdn: number; literalMismatch: number; claimsUs: number; badSyntax: number };
  pregreet: number;
  protocol: { pipelining: number; bareLf: number; nonSmtp: number };
  harvest: { rejected: number; window: number; weight: number };
  rate: { group: { ipv4: number; ipv6: number }; maxConcurrent: number; maxPerMinute: number; weight: number };
  firstContact: { enabled: boolean; profile: string; minRetryDelay: number; earlyRetry: number };
  allowlistCache: { ttl: number; maxEntries: number; network: { enabled: boolean; ttl: number; ipv4: number; ipv6: number } };
  knownSenders: { rdnsSuffixes: string[]; trustedBelow: number; networks?: string };
  greylisting: {
    enabled: boolean;
    minDelay: number;
    pendingExpiry: number;
    passedExpiry: number;
    network: { ipv4: number; ipv6: number };
    /** Deprecated (knownSenders); no defaults: present only when written. */
    exempt?: { rdnsSuffixes?: string[]; trustedBelow?: number };
  };
  reputation: { enabled: boolean; weight: number; threshold: number; halfLife: number };
  tarpit: { profile: string };
  profiles: Record<string, RawProfile>;
}

export interface RawZone {
  zone: string;
  weight: number;
  answers: string[];
  timeout: number;
}

export interface RawProfile {
  delays: { banner: number; helo: number; mail: number; rcpt: number; data: number; other: number };
  stutter: number;
  jitter: number;
  maxHold: number;
  end: 'allowlist' | 'relay' | { reply: 421 | 451 | 554; text: string };
}
