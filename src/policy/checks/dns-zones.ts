/**
 * The `dnsbl` and `dnswl` checks: the client's address asked of every zone at
 * once (RFC 5782 names: reversed octets, or nibbles for IPv6), each zone with
 * its own timeout, so the slowest zone bounds the wait, not their sum. An
 * answer counts only inside the zone's `answers` ranges: lists answer
 * 127.255.255.x for their own errors ("query refused via public resolver"),
 * which must not list every client. A zone that timed out or failed adds no
 * evidence, but its outcome is reported for `explain` and the metrics.
 */
import { parseIp } from '../../core/ip.js';
import type { DnsClient } from '../dns/dns-client.js';
import { zoneQueryName } from '../dns/query-name.js';
import type { Evidence } from '../evidence.js';
import { answerMatches } from '../lists/answer-range.js';
import type { DnsZone } from '../spec.js';

export type ZoneKind = 'dnsbl' | 'dnswl';

/** `listed`: an answer inside the filter; `not-listed`: NXDOMAIN/NODATA, or only answers outside it. */
export type ZoneResult = 'listed' | 'not-listed' | 'timeout' | 'error';

export interface ZoneLookup {
  readonly zone: string;
  readonly kind: ZoneKind;
  /** The name asked (`2.0.0.127.zen.example.test`). */
  readonly query: string;
  readonly result: ZoneResult;
  /** Every address the zone answered, counted or not (a `not-listed` with answers was filtered out). */
  readonly answers: readonly string[];
  /** The answers that counted (inside the zone's `answers`). */
  readonly matched: readonly string[];
  /** One line for `explain`: "127.0.0.2", "answered 127.255.255.254, outside 127.0.0.2-127.0.0.11", "timed out after 2 s". */
  readonly detail: string;
}

export interface ZoneCheck {
  readonly kind: ZoneKind;
  readonly evidence: Evidence[];
  readonly lookups: ZoneLookup[];
}

export async function checkDnsZones(address: string, zones: readonly DnsZone[], kind: ZoneKind, dns: DnsClient): Promise<ZoneCheck> {
  const ip = parseIp(address);
  if (!ip || zones.length === 0) return { kind, evidence: [], lookups: [] };
  const lookups = await Promise.all(zones.map((zone) => lookupZone(zoneQueryName(ip, zone.zone), zone, kind, dns)));
  const evidence: Evidence[] = [];
  lookups.forEach((lookup, i) => {
    const zone = zones[i];
    if (lookup.result !== 'listed' || !zone) return;
    evidence.push({ check: kind, weight: zone.weight, reason: `listed on ${lookup.zone} (${lookup.matched.join(', ')})`, class: kind });
  });
  return { kind, evidence, lookups };
}

async function lookupZone(query: string, zone: DnsZone, kind: ZoneKind, dns: DnsClient): Promise<ZoneLookup> {
  const name = zone.zone.replace(/\.$/, '');
  const base = { zone: name, kind, query };
  const result = await dns.resolve4(query, { zone: name, timeout: zone.timeout });
  if (result.kind === 'nxdomain') return { ...base, result: 'not-listed', answers: [], matched: [], detail: 'not listed' };
  if (result.kind === 'error') {
    const timeout = result.reason === 'timeout';
    return { ...base, result: timeout ? 'timeout' : 'error', answers: [], matched: [], detail: timeout ? `timed out after ${zone.timeout} s` : `lookup failed: ${result.reason} (${result.code})` };
  }
  const matched = result.addresses.filter((a) => answerMatches(zone.answers, a));
  if (matched.length > 0) return { ...base, result: 'listed', answers: result.addresses, matched, detail: matched.join(', ') };
  const ranges = zone.answers.map((r) => r.text).join(', ');
  return { ...base, result: 'not-listed', answers: result.addresses, matched: [], detail: `answered ${result.addresses.join(', ')}, outside ${ranges}` };
}
