/**
 * The SPF walk (what OpenBSD's `smtpctl spf walk` does): for each domain,
 * read its SPF record and follow it to the networks it names as senders,
 * through `include:` (RFC 7208 §5.2) and `redirect=` (§6.1), with `ip4:` and
 * `ip6:` (§5.6) taken as written and `a` and `mx` (§5.3, §5.4) resolved to
 * addresses widened by their dual CIDR lengths.
 *
 * It is not check_host(): there is no client to match, so every term is
 * followed instead of stopping at the first match. Only pass terms (`+` or
 * no qualifier, §4.6.2) give senders; `-`, `~` and `?` terms, terms after
 * `all` (never evaluated, §5.1) and a redirect beside `all` (ignored, §6.1)
 * are noted on their source, quietly. What cannot become a list of networks
 * (`ptr`, `exists`, macros, `exp=`) is reported and skipped, and so are
 * `+all` and networks wider than IPv4 /8 or IPv6 /16.
 *
 * RFC 7208 §4.6.4's limits (10 DNS-querying terms per evaluation, 10 MX
 * names per `mx`) are reported, not obeyed: big senders exceed them, and the
 * point is to know all their networks. The walk is still bounded: a domain
 * is walked once however many records include it, loops are found on the
 * include path, and nesting stops at `maxDepth`.
 *
 * Every lookup goes through the DnsClient's value results (src/policy/dns/
 * dns-client.ts): a failure is a problem naming the domain and the term, and
 * the walk goes on with the rest.
 */
import { parseIp } from '../../core/ip.js';
import type { AddressResult, DnsError, LookupOptions, MxResult, TextResult } from '../dns/dns-client.js';
import { networkOf, networkText, type Network } from './network.js';
import { spfProblem, type SpfProblem, type SpfProblemCode } from './spf-problem.js';
import { isSpfRecord, parseSpfRecord, type DomainSpec, type HostTerm, type Qualifier, type SpfTerm, type TargetModifier } from './spf-record.js';

/** The lookups the walk makes; DnsClient has them. */
export interface SpfDns {
  resolveTxt(name: string, options: LookupOptions): Promise<TextResult>;
  resolveMx(name: string, options: LookupOptions): Promise<MxResult>;
  resolve4(name: string, options: LookupOptions): Promise<AddressResult>;
  resolve6(name: string, options: LookupOptions): Promise<AddressResult>;
}

export interface SpfWalkOptions {
  /** include/redirect levels followed below a domain asked for (default MAX_DEPTH). */
  readonly maxDepth?: number;
}

/** A network and the term that gave it. */
export interface FoundNetwork {
  readonly network: Network;
  /** The term as written (`ip4:192.0.2.0/24`, `mx/24`). */
  readonly term: string;
  /** For `a` and `mx`: the host name whose address it is. */
  readonly host?: string | undefined;
}

/** A term that gives no senders, skipped without a message (it goes in the list as a comment). */
export interface SkippedTerm {
  readonly term: string;
  readonly reason: string;
}

/** One record's part of a walk: what it gave, for the domain asked for. */
export interface SpfSource {
  /** The domain asked for. */
  readonly domain: string;
  /** The domain whose record this is (`domain` itself, or one reached through include/redirect). */
  readonly record: string;
  /** From `domain` to `record`. */
  readonly path: readonly string[];
  readonly networks: readonly FoundNetwork[];
  readonly skipped: readonly SkippedTerm[];
  /** Set when `record` had been walked already, for the domain asked for named here: what it gave is listed under that earlier walk. */
  readonly walkedFor?: string | undefined;
}

export interface SpfWalk {
  /** The domains asked for, without repeats. */
  readonly domains: readonly string[];
  /** In walk order: each record before the ones it includes. */
  readonly sources: readonly SpfSource[];
  readonly problems: readonly SpfProblem[];
}

/**
 * A compliant record nests at most 10 deep (each include costs a lookup,
 * §4.6.4); a few more levels leave room for records that ignore the limit,
 * while a chain of generated names cannot run on for ever.
 */
export const MAX_DEPTH = 15;
/** RFC 7208 §4.6.4. */
export const LOOKUP_LIMIT = 10;
/** RFC 7208 §4.6.4: per `mx` term. */
export const MX_LIMIT = 10;
/** The DnsClient metrics label of every lookup here. */
const ZONE: LookupOptions = { zone: 'spf' };

export async function walkSpf(domains: readonly string[], dns: SpfDns, options: SpfWalkOptions = {}): Promise<SpfWalk> {
  const walker = new Walker(dns, options.maxDepth ?? MAX_DEPTH);
  const unique: string[] = [];
  for (const d of domains) if (!unique.some((u) => key(u) === key(d))) unique.push(bare(d));
  for (const domain of unique) await walker.walkAsked(domain);
  return { domains: unique, sources: walker.sources, problems: walker.problems };
}

/** Where a record was reached from: the include or redirect term, in the record of `domain`. */
interface Referrer {
  readonly domain: string;
  readonly term: string;
}

interface MutableSource extends SpfSource {
  readonly networks: FoundNetwork[];
  readonly skipped: SkippedTerm[];
}

interface FetchFailure {
  readonly ok: false;
  readonly code: SpfProblemCode;
  readonly reason: string;
}
type Fetched = { readonly ok: true; readonly text: string } | FetchFailure;

interface Walked {
  /** The domain asked for whose walk went through it first. */
  readonly for: string;
  /** DNS-querying terms in its evaluation, nested records included (§4.6.4). */
  lookups: number;
  /** Set when it has no record to follow. */
  failed?: FetchFailure;
}

class Walker {
  readonly sources: MutableSource[] = [];
  readonly problems: SpfProblem[] = [];
  /** Records walked (or being walked), by domain. */
  private readonly walked = new Map<string, Walked>();

  constructor(
    private readonly dns: SpfDns,
    private readonly maxDepth: number,
  ) {}

  async walkAsked(domain: string): Promise<void> {
    const lookups = await this.walkRecord(domain, [], undefined);
    if (lookups > LOOKUP_LIMIT) {
      this.report('lookup-limit', { domain, from: domain }, `${lookups} DNS-querying terms (include, a, mx, ptr, exists, redirect) in its evaluation, more than RFC 7208 §4.6.4's ${LOOKUP_LIMIT}: receivers that keep to the limit answer permerror`);
    }
  }

  /** Walks `domain`'s record; returns the DNS-querying terms its evaluation holds (§4.6.4), nested records included. */
  private async walkRecord(domain: string, path: readonly string[], via: Referrer | undefined): Promise<number> {
    const from = path[0] ?? domain;
    const here = via === undefined ? { domain, from } : { domain: via.domain, term: via.term, from };
    if (path.some((p) => key(p) === key(domain))) {
      this.report('loop', here, `loop: ${[...path.slice(path.findIndex((p) => key(p) === key(domain))), domain].join(' -> ')}`);
      return 0;
    }
    if (path.length > this.maxDepth) {
      this.report('too-deep', here, `${domain} is nested more than ${this.maxDepth} include/redirect levels below ${from}; not followed`);
      return 0;
    }
    const seen = this.walked.get(key(domain));
    if (seen?.failed !== undefined) {
      // Each record that names a domain without a usable record gets its own message.
      this.report(seen.failed.code, here, seen.failed.reason);
      return 0;
    }
    if (seen !== undefined) {
      this.sources.push({ domain: from, record: domain, path: [...path, domain], networks: [], skipped: [], walkedFor: seen.for });
      return seen.lookups;
    }
    const entry: Walked = { for: from, lookups: 0 };
    this.walked.set(key(domain), entry);

    const fetched = await this.fetch(domain);
    if (!fetched.ok) {
      entry.failed = fetched;
      this.report(fetched.code, here, fetched.reason);
      return 0;
    }
    const record = parseSpfRecord(fetched.text);
    for (const e of record.errors) this.report(e.code, { domain, term: e.term, from }, e.reason);
    const source: MutableSource = { domain: from, record: domain, path: [...path, domain], networks: [], skipped: [] };
    this.sources.push(source);
    entry.lookups = await this.walkTerms(record.terms, source);
    return entry.lookups;
  }

  private async walkTerms(terms: readonly SpfTerm[], source: MutableSource): Promise<number> {
    const domain = source.record;
    const at = (term: string) => ({ domain, term, from: source.domain });
    let lookups = 0;
    let afterAll = false;
    for (const term of terms) {
      if (afterAll && term.kind !== 'redirect' && term.kind !== 'exp' && term.kind !== 'modifier') {
        source.skipped.push({ term: term.text, reason: 'after "all": never evaluated (RFC 7208 §5.1)' });
        continue;
      }
      switch (term.kind) {
        case 'all':
          afterAll = true;
          if (term.qualifier === '+') this.report('pass-all', at(term.text), 'authorises every address on the Internet; not listed');
          break;
        case 'ip4':
        case 'ip6':
          if (this.passes(term.qualifier, term.text, source)) this.add(source, { network: term.network, term: term.text });
          break;
        case 'a':
        case 'mx':
          lookups++;
          if (this.passes(term.qualifier, term.text, source) && this.fixed(term.domain, term.text, source)) await this.hosts(term, source);
          break;
        case 'include':
          lookups++;
          if (this.passes(term.qualifier, term.text, source) && this.fixed(term.domain, term.text, source)) {
            lookups += await this.walkRecord(bare(term.domain.text), source.path, { domain, term: term.text });
          }
          break;
        case 'ptr':
        case 'exists':
          lookups++;
          if (this.passes(term.qualifier, term.text, source)) {
            const why = term.kind === 'ptr' ? 'authorises clients by their reverse DNS name (RFC 7208 §5.5)' : 'authorises clients by a DNS lookup made for each one (RFC 7208 §5.7)';
            this.report('unwalkable', at(term.text), `${why}: no list of networks can hold that; skipped`);
          }
          break;
        case 'exp':
          this.report('unwalkable', at(term.text), 'explanation for rejected mail (RFC 7208 §6.2): names no senders; skipped');
          break;
        case 'modifier':
          source.skipped.push({ term: term.text, reason: 'unknown modifier, ignored (RFC 7208 §6)' });
          break;
        case 'redirect':
          break; // §6.1: applies after every mechanism, wherever it is written; below
      }
    }
    // §6.1: redirect is used only when no mechanism matched, and never beside "all".
    const redirect = terms.find((t): t is TargetModifier => t.kind === 'redirect');
    if (redirect !== undefined) {
      if (terms.some((t) => t.kind === 'all')) source.skipped.push({ term: redirect.text, reason: 'ignored: the record has "all" (RFC 7208 §6.1)' });
      else {
        lookups++;
        if (this.fixed(redirect.domain, redirect.text, source)) lookups += await this.walkRecord(bare(redirect.domain.text), source.path, { domain, term: redirect.text });
      }
    }
    return lookups;
  }

  /**
   * Lists a network, unless it is wider than any mail provider's (the widest
   * big senders publish are around IPv4 /14 and IPv6 /32): a record that
   * names a sixteenth of the Internet is a mistake or a trap, and like `+all`
   * it would make a stranger a known sender.
   */
  private add(source: MutableSource, found: FoundNetwork): void {
    const widest = WIDEST[found.network.ip.family];
    if (found.network.prefix >= widest) {
      source.networks.push(found);
      return;
    }
    const where = found.host === undefined ? '' : ` (${found.host})`;
    this.report('wide-network', { domain: source.record, term: found.term, from: source.domain }, `${networkText(found.network)}${where} is wider than /${widest}; not listed`);
  }

  /** Whether a mechanism's matches are senders: only pass (§4.6.2). The others are noted on the source. */
  private passes(qualifier: Qualifier, term: string, source: MutableSource): boolean {
    if (qualifier === '+') return true;
    source.skipped.push({ term, reason: `qualifier "${qualifier}" (${QUALIFIER_RESULT[qualifier]}): not a sender` });
    return false;
  }

  /** Whether a target names one domain; a macro (§7) names whatever the client being checked makes of it, and is reported. */
  private fixed(spec: DomainSpec | undefined, term: string, source: MutableSource): boolean {
    if (spec === undefined || !spec.macro) return true;
    this.report('unwalkable', { domain: source.record, term, from: source.domain }, 'the target holds a macro (RFC 7208 §7), which depends on each client and message; skipped');
    return false;
  }

  /** `a` and `mx`: the target's (or its MX hosts') A and AAAA addresses, widened by the term's prefix lengths. */
  private async hosts(term: HostTerm, source: MutableSource): Promise<void> {
    const at = { domain: source.record, term: term.text, from: source.domain };
    const target = term.domain === undefined ? source.record : bare(term.domain.text);
    let names = [target];
    if (term.kind === 'mx') {
      const mx = await this.dns.resolveMx(target, ZONE);
      if (mx.kind === 'error') {
        this.report('dns-error', at, `MX lookup of ${target} failed: ${dnsFailure(mx)}`);
        return;
      }
      if (mx.kind === 'nxdomain') {
        this.report('no-address', at, `${target} has no MX record`);
        return;
      }
      // RFC 7505: a null MX ("." or '' from c-ares) says the domain takes no mail; it names no host.
      const hosts = mx.exchanges.filter((m) => m.exchange !== '' && m.exchange !== '.');
      if (hosts.length === 0) {
        this.report('no-address', at, `${target} has a null MX (RFC 7505): no mail host`);
        return;
      }
      if (hosts.length > MX_LIMIT) this.report('mx-limit', at, `${target} has ${hosts.length} MX names, more than RFC 7208 §4.6.4's ${MX_LIMIT}: receivers that keep to the limit answer permerror; all are listed`);
      // Preference, then name (by code unit, not locale): the same zone gives the same file.
      names = [...hosts].sort((a, b) => a.priority - b.priority || (a.exchange < b.exchange ? -1 : a.exchange > b.exchange ? 1 : 0)).map((m) => bare(m.exchange));
    }
    const answers = await Promise.all(
      names.map(async (name) => {
        const [v4, v6] = await Promise.all([this.dns.resolve4(name, ZONE), this.dns.resolve6(name, ZONE)]);
        return { name, v4, v6 };
      }),
    );
    for (const { name, v4, v6 } of answers) {
      for (const [type, result, prefix] of [['A', v4, term.cidr4], ['AAAA', v6, term.cidr6]] as const) {
        if (result.kind === 'error') this.report('dns-error', at, `${type} lookup of ${name} failed: ${dnsFailure(result)}`);
        if (result.kind !== 'answer') continue;
        for (const address of result.addresses) {
          const ip = parseIp(address);
          if (ip !== undefined) this.add(source, { network: networkOf(ip, prefix), term: term.text, host: name });
        }
      }
      if (v4.kind === 'nxdomain' && v6.kind === 'nxdomain') this.report('no-address', at, `${name} has no A or AAAA record`);
    }
  }

  /** The domain's one SPF record (§4.5), or why there is none to follow. */
  private async fetch(domain: string): Promise<Fetched> {
    const txt = await this.dns.resolveTxt(domain, ZONE);
    if (txt.kind === 'error') return { ok: false, code: 'dns-error', reason: `TXT lookup of ${domain} failed: ${dnsFailure(txt)}` };
    if (txt.kind === 'nxdomain') return { ok: false, code: 'no-record', reason: `${domain} has no SPF record (no such domain, or no TXT record)` };
    const spf = txt.texts.filter(isSpfRecord);
    if (spf.length === 0) return { ok: false, code: 'no-record', reason: `${domain} has no SPF record (no TXT record starts with "v=spf1")` };
    if (spf.length > 1) return { ok: false, code: 'multiple-records', reason: `${domain} has ${spf.length} SPF records; RFC 7208 §4.5 makes that a permerror, so none is followed` };
    return { ok: true, text: spf[0] ?? '' };
  }

  private report(code: SpfProblemCode, at: { domain: string; term?: string | undefined; from: string }, reason: string): void {
    this.problems.push(spfProblem(code, at, reason));
  }
}

/** Prefix lengths below which a network is not listed (see Walker.add). */
export const WIDEST: Readonly<Record<'ipv4' | 'ipv6', number>> = { ipv4: 8, ipv6: 16 };

const QUALIFIER_RESULT: Readonly<Record<Qualifier, string>> = { '+': 'pass', '-': 'fail', '~': 'softfail', '?': 'neutral' };

function dnsFailure(e: DnsError): string {
  return `${e.reason} (${e.code})`;
}

/** A name as DNS is asked it: without the trailing dot a record may write. */
function bare(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** Domain names compare case-insensitively (RFC 4343), with or without the trailing dot. */
function key(name: string): string {
  return bare(name).toLowerCase();
}
