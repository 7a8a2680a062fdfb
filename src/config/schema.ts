/**
 * The configuration file's one JSON Schema (draft-07) and the type it validates
 * to. Defaults live in the schema (`default`), so ajv fills them in one place;
 * `config/smtp-tarpit.schema.json` is generated from CONFIG_SCHEMA for editors
 * and test/config/schema.test.ts fails when the two drift apart.
 *
 * Units: durations are seconds, sizes are bytes.
 */

/** An address to listen on or connect to: `host:port`, IPv6 as `[::1]:2525`. */
const ENDPOINT = { type: 'string', pattern: '^(\\[[0-9A-Fa-f:.]+\\]|[^:\\[\\]\\s]+):[0-9]{1,5}$' } as const;
const SECONDS = { type: 'number', exclusiveMinimum: 0 } as const;

export const CONFIG_SCHEMA = {
  $schema: 'http://json-schema.org/draft-07/schema#',
  $id: 'https://smtp-tarpit.invalid/schema/smtp-tarpit.json',
  title: 'smtp-tarpit configuration',
  type: 'object',
  additionalProperties: false,
  properties: {
    listen: { ...ENDPOINT, default: '0.0.0.0:25', description: 'Where clients connect: host:port, [::]:25 for IPv6.' },
    hostname: { type: 'string', minLength: 1, maxLength: 253, description: 'Our name in the banner and EHLO reply. Default: the machine hostname.' },
    banner: { type: 'string', maxLength: 200, default: '', description: 'Text after "220 <hostname> ESMTP" in the greeting.' },
    backlog: { type: 'integer', minimum: 1, maximum: 65535, default: 4096, description: 'Listen backlog; Node defaults to 511, which stalled 2,000 simultaneous connects for seconds. The kernel caps it at net.core.somaxconn.' },
    policies: { type: 'string', default: '../policies', description: 'Directory of policy files, relative to this file.' },
    workers: { type: 'integer', minimum: 1, maximum: 256, default: 1, description: 'Processes serving SMTP on the shared listener (node:cluster); 1 serves from this one process. Above 1 a primary process forks them, replaces any that dies and serves the metrics listener for all of them. Every cap (limits, tarpit, per-client, rate windows, allowlist cache in memory) applies per worker.' },
    user: { type: 'string', minLength: 1, description: 'When started as root: user to switch to once the listeners are bound (name or uid). Set together with group. Ignored, with a log line, when not started as root.' },
    group: { type: 'string', minLength: 1, description: 'When started as root: group to switch to (name or gid); supplementary groups come from the user\'s entries in the group database.' },
    allowRoot: { type: 'boolean', default: false, description: 'Keep running as root on a non-loopback listen address. Off: such a start is refused (exit 1); set user and group instead, or run unprivileged with CAP_NET_BIND_SERVICE.' },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxConnections: { type: 'integer', minimum: 1, default: 5000, description: 'Client connections open at once; past it new clients get 421. Each relayed client also uses a backend socket.' },
        maxConnectionsPerClient: { type: 'integer', minimum: 1, default: 20, description: 'Connections open at once from one client address (like Postfix smtpd_client_connection_count_limit).' },
        maxConnectionsPerAllowedClient: { type: 'integer', minimum: 1, default: 50, description: 'Connections open at once from one address on the allow list: a partner relay opens many in parallel. Postfix exempts mynetworks from smtpd_client_connection_count_limit (50).' },
        cleanReserve: { type: 'number', minimum: 0, maximum: 0.5, default: 0.1, description: 'Fraction of maxConnections kept for clients the policy relays (allow list, allowlist cache, known senders, clean verdicts): a client the policy would hold or refuse is told 421 once the open connections reach maxConnections minus this share, so a flood of suspicious clients never takes the last slots.' },
        maxMessageSize: { type: 'integer', minimum: 1024, default: 10240000, description: 'Bytes; advertised as SIZE; larger messages get 552 (Postfix message_size_limit default).' },
        maxLineLength: { type: 'integer', minimum: 512, maximum: 65536, default: 4096, description: 'Longest command line in bytes; RFC 5321 §4.5.3.1.4 asks for 512, extensions need more. Longer lines get 421 and a close.' },
        maxRecipients: { type: 'integer', minimum: 100, default: 100, description: 'Recipients per message; RFC 5321 §4.5.3.1.8 requires at least 100. More get 452 4.5.3.' },
        idleTimeout: { ...SECONDS, default: 300, description: 'Seconds a client may stay silent; RFC 5321 §4.5.3.2.7 asks servers to wait at least 5 minutes.' },
        sessionTimeout: { ...SECONDS, default: 600, description: 'Seconds a relay session may last in all, from its connect-stage checks: the idle timeout measures only silence, so a client trickling a byte now and then would stay forever. Past it the client gets 421 4.4.2 (451 4.4.2 when a reply or a message is in flight; the backend never gets the final dot) and is closed. Held clients are bounded by their profile\'s maxHold instead.' },
        minDataRate: { type: 'number', minimum: 0, default: 500, description: 'Bytes per second a message body must average, after dataGrace seconds free, or the client gets 451 4.4.2 and is closed (the backend never gets the final dot). Postfix\'s smtpd_min_data_rate default; RFC 5321 §4.5.3.2 allows a server to require progress. 0 turns it off.' },
        dataGrace: { ...SECONDS, default: 10, description: 'Seconds after the 354 before minDataRate applies; bytes sent in them count.' },
      },
    },
    tarpit: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Caps on clients held by the tarpit, so a botnet flood cannot exhaust sockets or memory. Past any cap a new suspicious client gets 421 4.7.0 at once instead of a hold (counted in smtp_tarpit_tarpit_refused_total{cap}); clean clients are never held, so never refused by these caps.',
      properties: {
        maxHeld: { type: 'integer', minimum: 1, default: 4000, description: 'Clients held at once. Must be below limits.maxConnections, which counts held clients too, so clean clients always find room. Each held client is one open socket: raise both with the open-file limit (ulimit -n) in mind; one process holds about 19,000 at a limit of 20,000.' },
        maxHeldPerClient: { type: 'integer', minimum: 1, default: 50, description: 'Clients held at once from one address.' },
        maxHeldPerGroup: { type: 'integer', minimum: 1, default: 200, description: 'Clients held at once from one network (see groupIpv4, groupIpv6), so one botnet subnet cannot fill the tarpit.' },
        groupIpv4: { type: 'integer', minimum: 0, maximum: 32, default: 24, description: 'Prefix length of an IPv4 client\'s network for maxHeldPerGroup and backend.maxPerGroup (24: a /24).' },
        groupIpv6: { type: 'integer', minimum: 0, maximum: 128, default: 64, description: 'Prefix length of an IPv6 client\'s network for maxHeldPerGroup and backend.maxPerGroup (64: one site or host usually owns a whole /64).' },
        memoryBudget: { type: 'integer', minimum: 0, default: 0, description: 'Bytes of process resident memory (RSS, sampled at most once a second) above which nothing new is held; 0 turns it off.' },
      },
    },
    tls: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        key: { type: 'string', description: 'PEM private key file. STARTTLS is offered only when key and cert are both set.' },
        cert: { type: 'string', description: 'PEM certificate chain file.' },
      },
    },
    proxyProtocol: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        trustedProxies: { type: 'array', items: { type: 'string' }, default: [], description: 'Load balancer addresses or CIDRs whose connections start with a PROXY v1 or v2 header. Others are never asked for one.' },
        timeout: { ...SECONDS, default: 5, description: 'Seconds to wait for the PROXY header.' },
      },
    },
    backend: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        address: { ...ENDPOINT, default: '127.0.0.1:10025', description: 'The real MTA, which must accept XCLIENT from us (Postfix smtpd_authorized_xclient_hosts).' },
        heloName: { type: 'string', description: 'EHLO name on backend connections before XCLIENT. Default: hostname.' },
        starttls: { type: 'boolean', default: false, description: 'Use STARTTLS on backend connections (for a backend on another host).' },
        poolSize: { type: 'integer', minimum: 1, maximum: 10000, default: 50, description: 'Most backend connections open at once (one per relaying client session); keep it under the backend\'s process limit (Postfix default_process_limit, 100).' },
        warm: { type: 'integer', minimum: 0, default: 4, description: 'Connected, greeted, EHLO\'d spares kept ready so a client does not wait for them.' },
        idleTimeout: { ...SECONDS, default: 60, description: 'Seconds before an unused spare is closed and replaced; keep it under the backend\'s idle timeout (Postfix smtpd_timeout, 300).' },
        acquireTimeout: { ...SECONDS, default: 15, description: 'Seconds a client waits for a backend connection when all are busy; then 451 4.4.5.' },
        maxPerGroup: { type: 'integer', minimum: 1, description: 'Backend connections one client network (tarpit.groupIpv4, groupIpv6: a /24, a /64) may hold at once, waiting ones included, once half the pool is taken (below that a big sender\'s burst of parallel sessions costs nobody anything); past it the session gets 451 4.4.5 at MAIL at once instead of waiting, so a few networks cannot take the pool from everyone else. Allow-listed clients are exempt. Default: 10 % of poolSize (5 of 50), at least 1.' },
        timeouts: {
          type: 'object',
          additionalProperties: false,
          default: {},
          description: 'Seconds to wait for each backend reply. Each is below what RFC 5321 §4.5.3.2 makes the client wait for us, so the client hears our 451 before it gives up.',
          properties: {
            connect: { ...SECONDS, default: 10 },
            greeting: { ...SECONDS, default: 60, description: 'Client waits 5 min for our MAIL reply.' },
            command: { ...SECONDS, default: 120, description: 'EHLO, XCLIENT, MAIL, RCPT, RSET; the client waits 5 min.' },
            dataInit: { ...SECONDS, default: 60, description: 'DATA to 354; the client waits 2 min.' },
            dataBlock: { ...SECONDS, default: 120, description: 'A body write waiting for the backend to drain; the client waits 3 min per block.' },
            dataDone: { ...SECONDS, default: 300, description: 'Final dot to reply; the client waits 10 min.' },
          },
        },
        reconnect: {
          type: 'object',
          additionalProperties: false,
          default: {},
          properties: {
            minDelay: { ...SECONDS, default: 0.1 },
            maxDelay: { ...SECONDS, default: 30 },
          },
        },
      },
    },
    smtp: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        bareLineEndings: {
          enum: ['reject', 'normalize'],
          default: 'reject',
          description: 'Bare CR or LF in message data: reject the message with 550 5.5.2 (like Postfix 3.9 smtpd_forbid_bare_newline), or rewrite them to CRLF. Never forwarded as they are (SMTP smuggling).',
        },
        reverseLookup: { type: 'boolean', default: true, description: 'Look up the client\'s forward-confirmed hostname (FCrDNS) to pass to the backend as XCLIENT NAME; off sends NAME=[UNAVAILABLE].' },
      },
    },
    dns: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        servers: { type: 'array', items: { type: 'string' }, default: [], description: 'Resolver addresses (ip or ip:port, [v6]:port); empty uses the system resolver.' },
        timeout: { ...SECONDS, default: 3, description: 'Seconds per DNS lookup.' },
      },
    },
    metrics: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        listen: { anyOf: [ENDPOINT, { type: 'null' }], default: '127.0.0.1:9325', description: '/metrics, /healthz and /readyz; loopback by default; null turns it off.' },
      },
    },
    log: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info' },
      },
    },
    state: {
      type: 'object',
      additionalProperties: false,
      default: {},
      description: 'Where the policy remembers clients (allowlist cache, rate counts, harvest windows, greylisting, reputation).',
      properties: {
        store: {
          type: 'string',
          pattern: '^(memory|rediss?://[^\\s/]+(/[0-9]{1,2})?)$',
          default: 'memory',
          description: 'memory: in this process (each worker its own). redis://[:PASSWORD@]HOST:PORT[/DB] (rediss:// for TLS): shared by every process and host pointed at the same Redis, so a client met by one MX is remembered by all.',
        },
        prefix: { type: 'string', minLength: 1, maxLength: 64, default: 'smtp-tarpit:', description: 'Prefix of every Redis key, so an operator can list and flush them (redis-cli --scan --pattern "smtp-tarpit:*").' },
        timeout: { ...SECONDS, default: 0.1, description: 'Seconds a Redis operation may take before the session is answered from the local memory store instead (mail flow first); counted in smtp_tarpit_store_fallbacks_total.' },
      },
    },
    shutdown: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        grace: { ...SECONDS, default: 30, description: 'Seconds in-flight transactions get to finish on SIGTERM before the rest get 421.' },
      },
    },
  },
} as const;

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export type BareLineEndings = 'reject' | 'normalize';

/** The validated, defaulted, frozen configuration. */
export interface Config {
  /** The file it came from, or '(defaults)'. */
  readonly source: string;
  readonly listen: Endpoint;
  readonly hostname: string;
  readonly banner: string;
  readonly backlog: number;
  /** Absolute path of the policy directory. */
  readonly policies: string;
  /** Processes serving SMTP; 1 = this process, more = a cluster primary and its workers. */
  readonly workers: number;
  /** Who to become after binding when started as root (both or neither). */
  readonly user?: string;
  readonly group?: string;
  readonly allowRoot: boolean;
  readonly limits: {
    readonly maxConnections: number;
    readonly maxConnectionsPerClient: number;
    readonly maxConnectionsPerAllowedClient: number;
    /** Fraction of maxConnections only clients the policy relays may use. */
    readonly cleanReserve: number;
    /** @default 10240000 bytes */
    readonly maxMessageSize: number;
    readonly maxLineLength: number;
    readonly maxRecipients: number;
    /** seconds */
    readonly idleTimeout: number;
    /** seconds, from the connect-stage checks to the close */
    readonly sessionTimeout: number;
    /** bytes per second a message body must average after dataGrace; 0 = off */
    readonly minDataRate: number;
    /** seconds */
    readonly dataGrace: number;
  };
  readonly tarpit: {
    readonly maxHeld: number;
    readonly maxHeldPerClient: number;
    readonly maxHeldPerGroup: number;
    /** Prefix lengths of a client's network for maxHeldPerGroup. */
    readonly groupIpv4: number;
    readonly groupIpv6: number;
    /** Bytes of process RSS above which nothing new is held; 0 turns the check off. */
    readonly memoryBudget: number;
  };
  readonly tls: { readonly key?: string; readonly cert?: string };
  readonly proxyProtocol: { readonly trustedProxies: readonly string[]; readonly timeout: number };
  readonly backend: {
    readonly address: Endpoint;
    readonly heloName: string;
    readonly starttls: boolean;
    readonly poolSize: number;
    readonly warm: number;
    readonly idleTimeout: number;
    readonly acquireTimeout: number;
    /** Backend connections one client network may hold; defaulted from poolSize by the loader. */
    readonly maxPerGroup: number;
    readonly timeouts: {
      readonly connect: number;
      readonly greeting: number;
      readonly command: number;
      readonly dataInit: number;
      readonly dataBlock: number;
      readonly dataDone: number;
    };
    readonly reconnect: { readonly minDelay: number; readonly maxDelay: number };
  };
  readonly smtp: { readonly bareLineEndings: BareLineEndings; readonly reverseLookup: boolean };
  readonly dns: { readonly servers: readonly string[]; readonly timeout: number };
  readonly metrics: { readonly listen: Endpoint | null };
  readonly log: { readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent' };
  /** `store`: 'memory' or a redis:// URL. */
  readonly state: { readonly store: string; readonly prefix: string; readonly timeout: number };
  readonly shutdown: { readonly grace: number };
}
