/**
 * The one DNS client every check shares (DNSBL, DNSWL, FCrDNS, the XCLIENT
 * name; and `allowlist spf`'s SPF walk): node:dns/promises `Resolver`s
 * pointed at the configured servers, a hard per-call deadline, an answer
 * cache bounded by entry count that keeps answers for their TTL, and one
 * query in flight per name and type however many sessions ask. Results are
 * values, never exceptions: a check decides what a timeout means, and no
 * lookup can reject into a hook (the exception trap's rule: a hook never sees a rejection).
 */
import { Resolver } from 'node:dns/promises';
import { performance } from 'node:perf_hooks';
import { LRUCache } from 'lru-cache';
import { parseIp, type Ip } from '../../core/ip.js';
import { dnsCacheTotal, dnsLookupSeconds } from './metrics.js';
import { ptrQueryName } from './query-name.js';

export type DnsErrorReason = 'timeout' | 'servfail' | 'refused' | 'unreachable' | 'bad-response' | 'other';

/** NXDOMAIN and NODATA alike: the name has no record of the type asked (for a DNSxL: not listed). */
export interface DnsNotFound {
  readonly kind: 'nxdomain';
}
/** The resolver did not give an answer: our side's problem, never held against the client. */
export interface DnsError {
  readonly kind: 'error';
  readonly reason: DnsErrorReason;
  /** c-ares code (`ESERVFAIL`, …), or `ETIMEOUT` when our own deadline fired. */
  readonly code: string;
}
export type AddressResult = { readonly kind: 'answer'; readonly addresses: readonly string[]; readonly ttl: number } | DnsNotFound | DnsError;
export type NameResult = { readonly kind: 'answer'; readonly names: readonly string[]; readonly ttl: number } | DnsNotFound | DnsError;
/** TXT answers, one string per record: its character-strings joined as RFC 7208 §3.3 says (no separator). */
export type TextResult = { readonly kind: 'answer'; readonly texts: readonly string[]; readonly ttl: number } | DnsNotFound | DnsError;
/** One MX record; `exchange` is '' for a null MX (RFC 7505: the domain accepts no mail). */
export interface MxRecord {
  readonly exchange: string;
  readonly priority: number;
}
export type MxResult = { readonly kind: 'answer'; readonly exchanges: readonly MxRecord[]; readonly ttl: number } | DnsNotFound | DnsError;
type DnsResult = AddressResult | NameResult | TextResult | MxResult;

export interface DnsClientOptions {
  /** Resolver addresses: `ip`, `ip:port`, `[v6]:port`; empty uses the system's resolvers. A bad one throws here. */
  readonly servers: readonly string[];
  /** Seconds a lookup may take when the caller gives no timeout of its own (FCrDNS, the XCLIENT name). */
  readonly timeout: number;
  /** Most cached answers (default 10,000). */
  readonly maxEntries?: number;
  /** Seconds NXDOMAIN/NODATA is remembered (default 60, at most 300): node's API hides the SOA's negative TTL. */
  readonly negativeTtl?: number;
  /** Seconds a PTR answer is remembered (default 300): node's PTR lookups do not report a TTL. */
  readonly ptrTtl?: number;
  /** Seconds a TXT or MX answer is remembered (default 300): node's TXT and MX lookups do not report a TTL either. */
  readonly untimedTtl?: number;
  /** Longest TTL honoured (default 1 day), so a huge TTL cannot pin a stale listing. */
  readonly maxTtl?: number;
  /** Millisecond clock for cache expiry; tests pass a fake one. */
  readonly now?: () => number;
}

export interface LookupOptions {
  /** Metrics label: the DNSBL/DNSWL zone, `rdns`, or `spf` (the SPF walk). */
  readonly zone: string;
  /** Seconds before the lookup counts as a timeout; defaults to the client's `timeout`. */
  readonly timeout?: number;
}

export const MAX_NEGATIVE_TTL = 300;
/** Distinct timeouts get a Resolver each; policies name a handful, this only stops a pathological reload loop. */
const MAX_RESOLVERS = 16;

const NOT_FOUND = new Set(['ENOTFOUND', 'ENODATA']);
const REASONS: Readonly<Record<string, DnsErrorReason>> = {
  ETIMEOUT: 'timeout',
  ESERVFAIL: 'servfail',
  EREFUSED: 'refused',
  ECONNREFUSED: 'unreachable',
  EFORMERR: 'bad-response',
  EBADRESP: 'bad-response',
};

export class DnsClient {
  private readonly servers: readonly string[];
  private readonly defaultTimeout: number;
  private readonly negativeTtlMs: number;
  private readonly ptrTtlMs: number;
  private readonly untimedTtlMs: number;
  private readonly maxTtlMs: number;
  private readonly cache: LRUCache<string, DnsResult>;
  private readonly inflight = new Map<string, Promise<DnsResult>>();
  private readonly resolvers = new Map<number, Resolver>();

  constructor(options: DnsClientOptions) {
    this.servers = [...options.servers];
    this.defaultTimeout = options.timeout;
    this.negativeTtlMs = Math.min(options.negativeTtl ?? 60, MAX_NEGATIVE_TTL) * 1000;
    this.ptrTtlMs = (options.ptrTtl ?? 300) * 1000;
    this.untimedTtlMs = (options.untimedTtl ?? 300) * 1000;
    this.maxTtlMs = (options.maxTtl ?? 86_400) * 1000;
    this.cache = new LRUCache<string, DnsResult>({
      max: options.maxEntries ?? 10_000,
      // Without ttlResolution 0 a fake clock (and a 1 s TTL) sees expired entries for a while (docs/platform-notes.md).
      ttlResolution: 0,
      ...(options.now ? { perf: { now: options.now } } : {}),
    });
    this.resolver(this.defaultTimeout); // validates `servers` now, not at the first client
  }

  /** A records, with the smallest TTL among them. */
  resolve4(name: string, options: LookupOptions): Promise<AddressResult> {
    return this.lookup<AddressResult>('A', name, options, async (r) => addresses(await r.resolve4(name, { ttl: true })));
  }

  /** AAAA records, with the smallest TTL among them. */
  resolve6(name: string, options: LookupOptions): Promise<AddressResult> {
    return this.lookup<AddressResult>('AAAA', name, options, async (r) => addresses(await r.resolve6(name, { ttl: true })));
  }

  /** PTR names of an address (IPv4-mapped IPv6 asked as IPv4), trailing dots as the server sent them. */
  reverse(address: string | Ip, options: LookupOptions): Promise<NameResult> {
    const ip = typeof address === 'string' ? parseIp(address) : address;
    if (!ip) return Promise.resolve({ kind: 'error', reason: 'other', code: 'EBADNAME' });
    const name = ptrQueryName(ip);
    return this.lookup<NameResult>('PTR', name, options, async (r) => {
      const names = await r.resolvePtr(name);
      return names.length > 0 ? { kind: 'answer', names, ttl: this.ptrTtlMs / 1000 } : { kind: 'nxdomain' };
    });
  }

  /**
   * TXT records (SPF, RFC 7208 §3.3). c-ares gives each record as its
   * character-strings (at most 255 bytes each); a long SPF record is split
   * across several and must be read as their concatenation, with no space
   * added, so each record's chunks are joined here.
   */
  resolveTxt(name: string, options: LookupOptions): Promise<TextResult> {
    return this.lookup<TextResult>('TXT', name, options, async (r) => {
      const records = await r.resolveTxt(name);
      return records.length > 0 ? { kind: 'answer', texts: records.map((chunks) => chunks.join('')), ttl: this.untimedTtlMs / 1000 } : { kind: 'nxdomain' };
    });
  }

  /** MX records, in the order the server sent them (a null MX, RFC 7505, has exchange ''). */
  resolveMx(name: string, options: LookupOptions): Promise<MxResult> {
    return this.lookup<MxResult>('MX', name, options, async (r) => {
      const records = await r.resolveMx(name);
      return records.length > 0
        ? { kind: 'answer', exchanges: records.map((m) => ({ exchange: m.exchange, priority: m.priority })), ttl: this.untimedTtlMs / 1000 }
        : { kind: 'nxdomain' };
    });
  }

  /**
   * The cached answer `resolve4(name)` would give at once, or undefined when it
   * would have to ask the resolver. A hit is counted and refreshes the entry
   * exactly as a lookup does; a miss counts nothing (the lookup that follows
   * counts it). Checks try this first, so a client whose answers are all
   * cached is vetted without a promise per lookup.
   */
  peek4(name: string): AddressResult | undefined {
    return this.cached<AddressResult>('A', name);
  }

  /** As peek4, for `resolve6`. */
  peek6(name: string): AddressResult | undefined {
    return this.cached<AddressResult>('AAAA', name);
  }

  /** As peek4, for `reverse`. */
  peekReverse(ip: Ip): NameResult | undefined {
    return this.cached<NameResult>('PTR', ptrQueryName(ip));
  }

  private cached<R extends DnsResult>(type: string, name: string): R | undefined {
    // The key starts with the record type and only run<R>() for that type stores under it, so what is stored is an R.
    const cached = this.cache.get(cacheKey(type, name)) as R | undefined;
    if (cached) cacheHits.inc();
    return cached;
  }

  private async lookup<R extends DnsResult>(type: string, name: string, options: LookupOptions, query: (r: Resolver) => Promise<R>): Promise<R> {
    const cached = this.cached<R>(type, name);
    if (cached) return cached;
    cacheMisses.inc();
    const key = cacheKey(type, name);
    const timeout = options.timeout ?? this.defaultTimeout;
    const started = performance.now();
    let running = this.inflight.get(key) as Promise<R> | undefined;
    if (!running) {
      running = this.run(key, timeout, query);
      this.inflight.set(key, running);
    }
    // DnsError is a member of every result type, so a timeout is an R too.
    const result = (await deadline(running, timeout)) as R;
    dnsLookupSeconds.observe({ zone: options.zone, result: result.kind === 'error' ? (result.reason === 'timeout' ? 'timeout' : 'error') : result.kind }, (performance.now() - started) / 1000);
    return result;
  }

  /** One query to the resolver; settles (never rejects) with the answer, which is cached even when it arrives after a caller's deadline. */
  private async run<R extends DnsResult>(key: string, timeout: number, query: (r: Resolver) => Promise<R>): Promise<R> {
    let result: R;
    try {
      result = await query(this.resolver(timeout));
    } catch (err) {
      result = failure(err) as R;
    } finally {
      this.inflight.delete(key);
    }
    const ttlMs = result.kind === 'answer' ? Math.min(result.ttl * 1000, this.maxTtlMs) : result.kind === 'nxdomain' ? this.negativeTtlMs : 0;
    // TTL 0 means "do not cache" (RFC 1035 §3.2.1); errors and timeouts are never cached.
    if (ttlMs > 0) this.cache.set(key, result, { ttl: ttlMs });
    return result;
  }

  /**
   * A Resolver whose c-ares timeout is this lookup's timeout, so an unanswered
   * query is given up by c-ares about when our deadline fires instead of
   * lingering. `resolver.cancel()` cancels every query on a Resolver, not one,
   * so it cannot enforce a per-zone timeout on a shared one; and c-ares alone
   * is no hard limit either: with several servers it tries each in turn, and
   * its timer is coarse (node 20.20, c-ares 1.34.6, one silent server, tries 1:
   * 100 ms gave up after 272 ms, 200 after 388, 500 after 1001). Hence
   * `deadline()` races every lookup with its own timer; that caller ignores
   * the late answer, which still fills the cache.
   */
  private resolver(timeoutSeconds: number): Resolver {
    const ms = Math.max(1, Math.ceil(timeoutSeconds * 1000));
    let resolver = this.resolvers.get(ms);
    if (!resolver) {
      resolver = new Resolver({ timeout: ms, tries: 1 });
      if (this.servers.length > 0) resolver.setServers([...this.servers]);
      if (this.resolvers.size >= MAX_RESOLVERS) this.resolvers.delete(this.resolvers.keys().next().value as number);
      this.resolvers.set(ms, resolver);
    }
    return resolver;
  }
}

/** Bound once: a cache hit is counted on every warm lookup. */
const cacheHits = dnsCacheTotal.tally({ result: 'hit' });
const cacheMisses = dnsCacheTotal.tally({ result: 'miss' });

function cacheKey(type: string, name: string): string {
  return `${type} ${name.toLowerCase()}`;
}

const TIMED_OUT: DnsError = { kind: 'error', reason: 'timeout', code: 'ETIMEOUT' };

/** The query's result, or a timeout after `seconds`; the query itself keeps running (it never rejects). */
function deadline<R extends DnsResult>(query: Promise<R>, seconds: number): Promise<R | DnsError> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(TIMED_OUT), Math.max(1, Math.ceil(seconds * 1000)));
    void query.then((result) => {
      clearTimeout(timer);
      resolve(result);
    });
  });
}

function failure(err: unknown): DnsNotFound | DnsError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? 'EUNKNOWN';
  if (NOT_FOUND.has(code)) return { kind: 'nxdomain' };
  return { kind: 'error', reason: REASONS[code] ?? 'other', code };
}

/** The answer's addresses under the smallest of their TTLs (the set is only as fresh as its oldest record). */
function addresses(records: readonly { address: string; ttl: number }[]): AddressResult {
  if (records.length === 0) return { kind: 'nxdomain' };
  return { kind: 'answer', addresses: records.map((a) => a.address), ttl: Math.min(...records.map((a) => a.ttl)) };
}
