/**
 * The client's forward-confirmed hostname (FCrDNS), as the backend expects in
 * XCLIENT NAME: the PTR name whose A/AAAA records include the client's
 * address (Postfix XCLIENT_README: NAME is the verified name). A failed
 * lookup says `[UNAVAILABLE]`, a timeout or server failure `[TEMPUNAVAIL]`, so
 * the backend's reject_unknown_client_hostname keeps its meaning.
 *
 * The lookup is the policy's own FCrDNS (src/policy/dns/fcrdns.ts); given the
 * policy engine's DnsClient it shares that client's cache and in-flight
 * queries, so the `rdns` check and the name cost one set of DNS queries.
 */
import { DnsClient } from '../policy/dns/dns-client.js';
import { forwardConfirm, NAME_TEMPUNAVAIL, NAME_UNAVAILABLE } from '../policy/dns/fcrdns.js';

export { NAME_TEMPUNAVAIL, NAME_UNAVAILABLE };

export interface ClientNameResolver {
  lookup(address: string): Promise<string>;
}

/** Used when `smtp.reverseLookup` is off: the backend is told honestly that there is no name. */
export const NO_LOOKUP: ClientNameResolver = { lookup: () => Promise.resolve(NAME_UNAVAILABLE) };

/** Names looked up through a DnsClient shared with the policy checks. */
export function clientNameResolver(dns: DnsClient): ClientNameResolver {
  return { lookup: async (address) => (await forwardConfirm(address, dns)).name };
}

/** Names looked up through a DnsClient of their own (no policy engine to share one with). */
export function createClientNameResolver(servers: readonly string[], timeoutSeconds: number): ClientNameResolver {
  return clientNameResolver(new DnsClient({ servers, timeout: timeoutSeconds }));
}
