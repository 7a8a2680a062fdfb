/**
 * The `rdns` check: reverse DNS present and forward-confirmed (FCrDNS, as
 * Postfix's reject_unknown_client_hostname sees it). A missing PTR weighs
 * `missing`, a PTR that does not lead back to the client `unconfirmed`; a
 * lookup that failed or timed out weighs nothing, because that is our
 * resolver's fault, not the client's. `name` is the XCLIENT NAME value.
 */
import { parseIp, type Ip } from '../../core/ip.js';
import { when, type MaybePromise } from '../../state/maybe-promise.js';
import type { DnsClient } from '../dns/dns-client.js';
import { forwardConfirm, type FcrdnsStatus } from '../dns/fcrdns.js';
import type { Evidence } from '../evidence.js';
import type { Policy } from '../spec.js';

export interface RdnsCheck {
  readonly evidence: Evidence[];
  /** Verified name without the trailing dot, `[UNAVAILABLE]` or `[TEMPUNAVAIL]`. */
  readonly name: string;
  readonly status: FcrdnsStatus;
  /** PTR names seen, for `explain`. */
  readonly ptr: readonly string[];
}

/**
 * `address` is the client as the socket gave it (the evidence names it so);
 * `ip` is it parsed, when the caller has done that already. Synchronous when
 * every answer is in the DNS cache (see forwardConfirm).
 */
export function checkRdns(address: string, weights: Policy['rdns'], dns: DnsClient, ip: Ip | undefined = parseIp(address)): MaybePromise<RdnsCheck> {
  return when(forwardConfirm(ip ?? address, dns), (result) => {
    const evidence: Evidence[] = [];
    if (result.status === 'missing') {
      evidence.push({ check: 'rdns', weight: weights.missing, reason: `no reverse DNS (PTR) for ${address}`, class: 'rdns' });
    } else if (result.status === 'unconfirmed') {
      const names = result.ptr.slice(0, 3).join(', ');
      evidence.push({ check: 'rdns', weight: weights.unconfirmed, reason: `reverse DNS ${names} does not resolve back to ${address}`, class: 'rdns' });
    }
    return { evidence, name: result.name, status: result.status, ptr: result.ptr };
  });
}
