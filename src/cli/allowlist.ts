/**
 * `smtp-tarpit allowlist spf DOMAIN…`: the networks the domains publish in
 * SPF as their senders, as a list file for the policy (docs/allowlist-spf.md).
 * Big senders retry from whole pools of addresses; knowing their networks in
 * advance lets the policy recognise them. DNS goes through the resolver the
 * configuration names (`dns.servers`, `dns.timeout`), as `explain`'s does.
 *
 * Messages go to stderr, one a line: `spf: DOMAIN: TERM: reason`, warnings
 * with `warning: ` in front. Exit status: 0 every domain walked cleanly
 * (warnings allowed); 1 an error was reported (the list still holds what was
 * found elsewhere), or nothing at all was found, or the file could not be
 * written; 2 the command could not run: bad arguments or configuration.
 */
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile } from '../config/load.js';
import { DnsClient } from '../policy/dns/dns-client.js';
import { formatCidrList } from '../policy/spf/cidr-output.js';
import { printable, problemMessage } from '../policy/spf/spf-problem.js';
import { domainNameError } from '../policy/spf/spf-record.js';
import { walkSpf } from '../policy/spf/spf-walk.js';
import { writeFileAtomic } from './write-atomic.js';

export interface AllowlistSpfArgs {
  readonly config: string;
  readonly domains: readonly string[];
  /** Write the list here (atomically) instead of to stdout. */
  readonly output?: string | undefined;
  /** Print errors only, not warnings. */
  readonly quiet?: boolean | undefined;
}

export const EXIT_CLEAN = 0;
export const EXIT_PROBLEMS = 1;
export const EXIT_USAGE = 2;

const GENERATOR = 'smtp-tarpit allowlist spf';

export async function runAllowlistSpf(args: AllowlistSpfArgs): Promise<number> {
  if (args.domains.length === 0) {
    console.error('spf: name at least one domain');
    return EXIT_USAGE;
  }
  const bad = args.domains.flatMap((d) => {
    const reason = domainNameError(d);
    return reason === undefined ? [] : [`spf: ${printable(d)}: not a domain name: ${printable(reason)}`];
  });
  if (bad.length > 0) {
    for (const line of bad) console.error(line);
    return EXIT_USAGE;
  }

  let dns: DnsClient;
  try {
    const config = loadConfigFile(args.config);
    dns = new DnsClient({ servers: config.dns.servers, timeout: config.dns.timeout });
  } catch (err) {
    if (err instanceof ConfigErrors) {
      for (const e of err.errors) console.error(e.message);
      return EXIT_USAGE;
    }
    // setServers() throws on an address it cannot use; the schema only knows they are strings.
    if (err instanceof Error && 'code' in err && err.code === 'ERR_INVALID_IP_ADDRESS') {
      console.error(`${args.config}: dns.servers: ${err.message}`);
      return EXIT_USAGE;
    }
    throw err;
  }

  const walk = await walkSpf(args.domains, dns);
  for (const p of walk.problems) if (p.severity === 'error' || args.quiet !== true) console.error(problemMessage(p));
  const list = formatCidrList(walk, { generatedAt: new Date(), generator: GENERATOR });
  const failed = walk.problems.some((p) => p.severity === 'error');

  if (list.networks === 0) {
    // Most likely DNS is down or a name is wrong: a good list from the last run is worth more than an empty one.
    const kept = args.output === undefined ? '' : `; ${args.output} left as it was`;
    console.error(`spf: no networks found for ${walk.domains.map(printable).join(' ')}${kept}`);
    if (args.output === undefined) process.stdout.write(list.text);
    return EXIT_PROBLEMS;
  }
  if (args.output === undefined) {
    process.stdout.write(list.text);
    return failed ? EXIT_PROBLEMS : EXIT_CLEAN;
  }
  try {
    writeFileAtomic(args.output, list.text);
  } catch (err) {
    console.error(`spf: cannot write ${args.output}: ${(err as Error).message}`);
    return EXIT_PROBLEMS;
  }
  return failed ? EXIT_PROBLEMS : EXIT_CLEAN;
}
