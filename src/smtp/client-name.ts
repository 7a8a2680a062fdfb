/**
 * The client's forward-confirmed hostname (FCrDNS), as the backend expects in
 * XCLIENT NAME: the PTR name whose A/AAAA records include the client's
 * address (Postfix XCLIENT_README: NAME is the verified name). A failed
 * lookup says `[UNAVAILABLE]`, a timeout or server failure `[TEMPUNAVAIL]`, so
 * the backend's reject_unknown_client_hostname keeps its meaning.
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';

export const NAME_UNAVAILABLE = '[UNAVAILABLE]';
export const NAME_TEMPUNAVAIL = '[TEMPUNAVAIL]';

export interface ClientNameResolver {
  lookup(address: string): Promise<string>;
}

/** Used when `smtp.reverseLookup` is off: the backend is told honestly that there is no name. */
export const NO_LOOKUP: ClientNameResolver = { lookup: () => Promise.resolve(NAME_UNAVAILABLE) };

const TEMPORARY = new Set(['ETIMEOUT', 'ESERVFAIL', 'ECONNREFUSED', 'EREFUSED', 'ECANCELLED']);

export function createClientNameResolver(servers: readonly string[], timeoutSeconds: number): ClientNameResolver {
  const resolver = new Resolver({ timeout: Math.ceil(timeoutSeconds * 1000), tries: 1 });
  if (servers.length > 0) resolver.setServers([...servers]);
  return {
    async lookup(address: string): Promise<string> {
      try {
        const names = await resolver.reverse(address);
        const family = isIP(address);
        for (const name of names.slice(0, 4)) {
          const forward = family === 6 ? await resolver.resolve6(name) : await resolver.resolve4(name);
          if (forward.some((a) => sameAddress(a, address))) return name.replace(/\.$/, '');
        }
        return NAME_UNAVAILABLE;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? '';
        return TEMPORARY.has(code) ? NAME_TEMPUNAVAIL : NAME_UNAVAILABLE;
      }
    },
  };
}

function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
