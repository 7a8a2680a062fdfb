/**
 * One SPF record (RFC 7208) read into its terms: which TXT strings are SPF
 * records (§4.5), and each term's qualifier, mechanism or modifier, target
 * domain and prefix lengths (§4.6.1, §5, §6, the ABNF of §12). Nothing here
 * asks DNS; src/policy/spf/spf-walk.ts follows the terms.
 *
 * A term that does not parse is an error value naming the term, and the
 * other terms are still returned: a receiver would give the whole record a
 * permerror (§4.6), but a walk that lists known senders reports it and keeps
 * what the rest of the record says.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { parseIp } from '../../core/ip.js';
import { fullLength, networkOf, type Network } from './network.js';

/** §4.6.2: `+` pass (the default), `-` fail, `~` softfail, `?` neutral. */
export type Qualifier = '+' | '-' | '~' | '?';

export interface DomainSpec {
  /** As written (case and a trailing dot kept). */
  readonly text: string;
  /**
   * Holds a macro (§7, `%{i}`, `%{d}`, `%%`…): the name depends on the
   * client and message being checked, so it names no one fixed domain.
   */
  readonly macro: boolean;
}

interface Written {
  /** The term exactly as the record wrote it, for messages. */
  readonly text: string;
}

export interface AllTerm extends Written {
  readonly kind: 'all';
  readonly qualifier: Qualifier;
}
export interface IncludeTerm extends Written {
  readonly kind: 'include';
  readonly qualifier: Qualifier;
  readonly domain: DomainSpec;
}
/** `a` and `mx` (§5.3, §5.4): the target's addresses, widened by the dual CIDR lengths (default 32 and 128). */
export interface HostTerm extends Written {
  readonly kind: 'a' | 'mx';
  readonly qualifier: Qualifier;
  /** Absent: the domain whose record this is. */
  readonly domain: DomainSpec | undefined;
  readonly cidr4: number;
  readonly cidr6: number;
}
export interface PtrTerm extends Written {
  readonly kind: 'ptr';
  readonly qualifier: Qualifier;
  readonly domain: DomainSpec | undefined;
}
/** `ip4` and `ip6` (§5.6), host bits cleared. */
export interface NetworkTerm extends Written {
  readonly kind: 'ip4' | 'ip6';
  readonly qualifier: Qualifier;
  readonly network: Network;
}
export interface ExistsTerm extends Written {
  readonly kind: 'exists';
  readonly qualifier: Qualifier;
  readonly domain: DomainSpec;
}
export type SpfMechanism = AllTerm | IncludeTerm | HostTerm | PtrTerm | NetworkTerm | ExistsTerm;

/** `redirect=` (§6.1) and `exp=` (§6.2). */
export interface TargetModifier extends Written {
  readonly kind: 'redirect' | 'exp';
  readonly domain: DomainSpec;
}
/** Any other `name=value`: §6 says to ignore it. */
export interface UnknownModifier extends Written {
  readonly kind: 'modifier';
  readonly name: string;
}
export type SpfModifier = TargetModifier | UnknownModifier;
export type SpfTerm = SpfMechanism | SpfModifier;

export type SpfTermErrorCode =
  /** Not a mechanism or modifier §12 allows: unknown mechanism, missing or malformed domain, bad macro, stray characters. */
  | 'syntax'
  /** `ip4:`/`ip6:` whose address is not one, or a prefix length out of range (`/33`, `//129`). */
  | 'bad-cidr'
  /** A second `redirect=` or `exp=` (§6: at most one each). */
  | 'duplicate-modifier';

export interface SpfTermError {
  readonly code: SpfTermErrorCode;
  /** The term as written. */
  readonly term: string;
  readonly reason: string;
}

export interface SpfRecord {
  /** The terms that parsed, in record order. */
  readonly terms: readonly SpfTerm[];
  /** One per term that did not; empty for a clean record. */
  readonly errors: readonly SpfTermError[];
}

/**
 * §4.5: an SPF record is a TXT record that starts with the version section
 * `v=spf1` followed by a space or nothing (`v=spf10` is not one). ABNF
 * literals are case-insensitive (RFC 5234 §2.3).
 */
export function isSpfRecord(text: string): boolean {
  return /^v=spf1(?: |$)/i.test(text);
}

/** Reads a record `isSpfRecord` accepted. Terms are separated by one or more spaces (§4.6.1: SP only, not tabs). */
export function parseSpfRecord(text: string): SpfRecord {
  const terms: SpfTerm[] = [];
  const errors: SpfTermError[] = [];
  const seenModifiers = new Set<string>();
  for (const written of text.split(' ').slice(1)) {
    if (written === '') continue;
    const term = parseTerm(written);
    if ('code' in term) {
      errors.push(term);
      continue;
    }
    if (term.kind === 'redirect' || term.kind === 'exp') {
      if (seenModifiers.has(term.kind)) {
        errors.push({ code: 'duplicate-modifier', term: written, reason: `a second ${term.kind}= (RFC 7208 §6 allows one); the first one is used` });
        continue;
      }
      seenModifiers.add(term.kind);
    }
    terms.push(term);
  }
  return { terms, errors };
}

/** §12 `name`: a modifier is `name=…`; checked before mechanisms, since a mechanism never holds `=` before `:` or `/`. */
const MODIFIER = /^([A-Za-z][A-Za-z0-9._-]*)=(.*)$/s;
/** §12 `ip4-cidr-length` / `ip6-cidr-length`: no leading zeros; the range is checked after. */
const PREFIX = /^(?:0|[1-9][0-9]*)$/;
/** The dual CIDR length at the end of an `a` or `mx` term: `/24`, `//64`, `/24//64`. */
const DUAL_CIDR = /^(.*?)(?:\/([^/]*))?(?:\/\/([^/]*))?$/s;

function parseTerm(text: string): SpfTerm | SpfTermError {
  const syntax = (reason: string): SpfTermError => ({ code: 'syntax', term: text, reason });
  const badCidr = (reason: string): SpfTermError => ({ code: 'bad-cidr', term: text, reason });

  const modifier = MODIFIER.exec(text);
  if (modifier) {
    const name = (modifier[1] ?? '').toLowerCase();
    const value = modifier[2] ?? '';
    if (name === 'redirect' || name === 'exp') {
      const domain = domainSpec(value);
      return typeof domain === 'string' ? syntax(`${name}=: ${domain}`) : { kind: name, text, domain };
    }
    const bad = macroStringError(value);
    return bad === undefined ? { kind: 'modifier', text, name } : syntax(`modifier ${name}=: ${bad}`);
  }

  const first = text[0] ?? '';
  const qualifier: Qualifier = isQualifier(first) ? first : '+';
  const body = isQualifier(first) ? text.slice(1) : text;
  const nameEnd = body.search(/[:/]/);
  const name = (nameEnd === -1 ? body : body.slice(0, nameEnd)).toLowerCase();
  const rest = nameEnd === -1 ? '' : body.slice(nameEnd);

  switch (name) {
    case 'all':
      return rest === '' ? { kind: 'all', text, qualifier } : syntax('"all" takes no argument');
    case 'include':
    case 'exists': {
      if (!rest.startsWith(':')) return syntax(`"${name}" needs ":domain"`);
      const domain = domainSpec(rest.slice(1));
      return typeof domain === 'string' ? syntax(domain) : { kind: name, text, qualifier, domain };
    }
    case 'ptr': {
      if (rest === '') return { kind: 'ptr', text, qualifier, domain: undefined };
      if (!rest.startsWith(':')) return syntax('"ptr" takes only ":domain"');
      const domain = domainSpec(rest.slice(1));
      return typeof domain === 'string' ? syntax(domain) : { kind: 'ptr', text, qualifier, domain };
    }
    case 'a':
    case 'mx': {
      if (rest !== '' && !rest.startsWith(':') && !rest.startsWith('/')) return syntax(`unexpected "${rest}" after "${name}"`);
      const [, spec = '', cidr4, cidr6] = DUAL_CIDR.exec(rest.startsWith(':') ? rest.slice(1) : rest) ?? [];
      const v4 = prefixLength(cidr4, 32);
      if (typeof v4 === 'string') return badCidr(`IPv4 prefix length ${v4}`);
      const v6 = prefixLength(cidr6, 128);
      if (typeof v6 === 'string') return badCidr(`IPv6 prefix length ${v6}`);
      if (!rest.startsWith(':')) {
        if (spec !== '') return syntax(`unexpected "${spec}" after "${name}"`);
        return { kind: name, text, qualifier, domain: undefined, cidr4: v4, cidr6: v6 };
      }
      const domain = domainSpec(spec);
      return typeof domain === 'string' ? syntax(domain) : { kind: name, text, qualifier, domain, cidr4: v4, cidr6: v6 };
    }
    case 'ip4':
    case 'ip6': {
      if (!rest.startsWith(':')) return syntax(`"${name}" needs ":address" or ":address/prefix"`);
      const value = rest.slice(1);
      const slash = value.indexOf('/');
      const address = slash === -1 ? value : value.slice(0, slash);
      const family = name === 'ip4' ? 'ipv4' : 'ipv6';
      // isIPv6 accepts a zone id (fe80::1%eth0), which §12's ip6-network does not.
      const valid = name === 'ip4' ? isIPv4(address) : isIPv6(address) && !address.includes('%');
      const ip = valid ? parseIp(address, { keepMapped: true }) : undefined;
      if (ip === undefined) return badCidr(`not an ${name === 'ip4' ? 'IPv4' : 'IPv6'} address: "${address}"`);
      const prefix = prefixLength(slash === -1 ? undefined : value.slice(slash + 1), fullLength(family));
      if (typeof prefix === 'string') return badCidr(`prefix length ${prefix}`);
      return { kind: name, text, qualifier, network: networkOf(ip, prefix) };
    }
    case '':
      return syntax('empty mechanism');
    default:
      // §5: an unknown mechanism is a permerror, not something to skip.
      return syntax(`unknown mechanism "${name}"`);
  }
}

function isQualifier(c: string): c is Qualifier {
  return c === '+' || c === '-' || c === '~' || c === '?';
}

/** The prefix length, `full` when not written, or why it is wrong. */
function prefixLength(written: string | undefined, full: number): number | string {
  if (written === undefined) return full;
  if (!PREFIX.test(written)) return `"/${written}" is not a number`;
  const n = Number(written);
  return n <= full ? n : `/${n} is out of range (0-${full})`;
}

/**
 * §12 `domain-spec = macro-string domain-end`: a name that ends in "." and a
 * top label (not all digits: an address is not a domain), or in a macro.
 * Returns why it is not one.
 */
function domainSpec(text: string): DomainSpec | string {
  if (text === '') return 'missing domain';
  const macro = macroStringError(text);
  if (macro !== undefined) return macro;
  if (text.includes('%')) return { text, macro: true };
  const bad = domainNameError(text);
  return bad === undefined ? { text, macro: false } : bad;
}

/** §12 `toplabel`: letters and digits with at least one letter, or a hyphenated label. */
const TOPLABEL = /^(?:[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*|[A-Za-z0-9]+-[A-Za-z0-9-]*[A-Za-z0-9])$/;

/**
 * Why `name` is not a domain an SPF term can name (§4.3 and §12: at least two
 * labels, each 1 to 63 octets, at most 253 in all, the last a `toplabel`), or
 * undefined when it is one. A trailing dot is allowed. Also checks the domains
 * given on the command line.
 */
export function domainNameError(name: string): string | undefined {
  const bare = name.endsWith('.') ? name.slice(0, -1) : name;
  if (bare === '') return 'empty domain';
  if (bare.length > 253) return `"${name}" is longer than 253 characters`;
  if ([...bare].some((c) => c <= ' ' || c > '~' || c === '%')) return `"${name}" holds a character a domain name cannot`;
  const labels = bare.split('.');
  if (labels.length < 2) return `"${name}" is not a fully qualified domain (RFC 7208 §12: it must end in "." and a top label)`;
  if (labels.some((l) => l === '')) return `"${name}" has an empty label`;
  if (labels.some((l) => l.length > 63)) return `"${name}" has a label longer than 63 characters`;
  if (!TOPLABEL.test(labels[labels.length - 1] ?? '')) return `"${name}" does not end in a valid top label`;
  return undefined;
}

/**
 * §7.1 `macro-string`: printable ASCII, where `%` starts `%{letter digits
 * [r] delimiters}`, `%%`, `%_` or `%-`; any other `%` is a syntax error.
 */
function macroStringError(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    const c = text[i] ?? '';
    if (c < '!' || c > '~') return `character ${JSON.stringify(c)} not allowed`;
    if (c !== '%') continue;
    const next = text[i + 1] ?? '';
    if (next === '%' || next === '_' || next === '-') {
      i++;
      continue;
    }
    const expand = /^%\{[slodiphcrtv][0-9]*r?[.\-+,/_=]*\}/i.exec(text.slice(i));
    if (!expand) return `bad macro at "${text.slice(i)}" (RFC 7208 §7.1)`;
    i += expand[0].length - 1;
  }
  return undefined;
}
