#!/usr/bin/env node
/**
 * The command line (yargs wiring only): serve, check, explain, status, allowlist, init, version.
 * Only src/cli/ may end the process.
 */
import cluster from 'node:cluster';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { runAllowlistSpf, EXIT_USAGE } from './allowlist.js';
import { runCheck } from './check.js';
import { CONFIG_CANDIDATES, locateConfig } from './config-path.js';
import { runExplain } from './explain.js';
import { DEFAULT_INIT_DIR, runInit } from './init.js';
import { runServe } from './serve.js';
import { runStatus } from './status.js';
import { VERSION } from './version.js';

const CONFIG_HELP = `Configuration file (YAML). Default: the first of ${CONFIG_CANDIDATES.map((c) => (c.startsWith('/') ? c : `./${c}`)).join(', ')} that exists`;

/** The configuration to use, having said on stderr which default was picked; undefined (exit status set) when there is none. */
function configFile(given: string | undefined, failCode = 1): string | undefined {
  const found = locateConfig(given);
  if (found.file === undefined) {
    console.error(found.error);
    process.exitCode = failCode;
    return undefined;
  }
  // A cluster worker parses the same arguments again; the primary has said it already.
  if (found.note !== undefined && cluster.isPrimary) console.error(found.note);
  return found.file;
}

/** `allowlist` documents exit 2 for a usage error; yargs would exit 1. */
function usageExit(msg: string | null, err: Error | null, y: Argv): void {
  if (err) throw err;
  y.showHelp();
  console.error(`\n${msg ?? ''}`);
  process.exit(EXIT_USAGE);
}

await yargs(hideBin(process.argv))
  .scriptName('smtp-tarpit')
  .usage('$0 <command> [options]')
  .command(
    'serve',
    'Listen for SMTP and relay clean sessions to the backend MTA',
    (y) =>
      y
        .option('config', { alias: 'c', type: 'string', describe: CONFIG_HELP })
        .option('listen', { type: 'string', describe: 'Override listen, HOST:PORT ([::1]:2525 for IPv6)' })
        .option('backend', { type: 'string', describe: 'Override backend.address, HOST:PORT' })
        .option('metrics', { type: 'string', describe: 'Override metrics.listen, HOST:PORT, or "off"' })
        .option('policies', { type: 'string', describe: 'Override the policy directory' })
        .option('workers', { type: 'number', describe: 'Override workers: processes sharing the listener (1 = this process only)' })
        .option('store', { type: 'string', describe: 'Override state.store: memory, or redis://HOST:PORT[/DB] to share what the policy remembers with other processes and hosts' }),
    async (argv) => {
      const config = configFile(argv.config);
      if (config !== undefined) process.exitCode = await runServe({ ...argv, config });
    },
  )
  .command(
    'check',
    'Validate the configuration and the policy files; exit 1 naming file, line and reason',
    (y) =>
      y
        .option('config', { alias: 'c', type: 'string', describe: CONFIG_HELP })
        .option('policies', { type: 'string', describe: 'Policy directory to check instead of the one the configuration names' }),
    (argv) => {
      const config = configFile(argv.config);
      if (config !== undefined) process.exitCode = runCheck({ ...argv, config });
    },
  )
  .command(
    'explain',
    'Run the real checks (DNS included) for a client and print each check\'s evidence, the score and the verdict',
    (y) =>
      y
        .option('ip', { type: 'string', demandOption: true, describe: 'Client address, IPv4 or IPv6' })
        .option('helo', { type: 'string', describe: 'HELO/EHLO name the client would send' })
        .option('from', { type: 'string', describe: 'Envelope sender (recorded)' })
        .option('rcpt', { type: 'string', describe: 'Envelope recipient (recorded)' })
        .option('config', { alias: 'c', type: 'string', describe: `${CONFIG_HELP}; its dns.servers are used` })
        .option('policies', { type: 'string', describe: 'Policy directory to use instead of the one the configuration names' })
        .option('json', { type: 'boolean', default: false, describe: 'Print JSON' })
        .option('store', { type: 'string', describe: 'Override state.store: redis://HOST:PORT[/DB] reads what a fleet remembers (greylisting, reputation, allowlist cache)' }),
    async (argv) => {
      const config = configFile(argv.config);
      if (config !== undefined) process.exitCode = await runExplain({ ...argv, config });
    },
  )
  .command(
    'status',
    'Ask the running proxy (its metrics listener) what it holds now: connections, sessions by stage, held by profile, hang-ups, backend pool, workers, last policy reload, caps',
    (y) =>
      y
        .option('metrics', { type: 'string', describe: 'Metrics listener to ask, HOST:PORT (default: metrics.listen from --config)' })
        .option('config', { alias: 'c', type: 'string', describe: `${CONFIG_HELP}; its metrics.listen is asked` })
        .option('json', { type: 'boolean', default: false, describe: 'Print JSON' })
        .epilog('Exit status: 0 reachable and ready; 1 reachable but not ready (the reason is printed); 2 the metrics listener cannot be reached (refused, or no answer within 3 s) or is not smtp-tarpit\'s.'),
    async (argv) => {
      // With --metrics no configuration is read, so none need exist.
      const config = argv.metrics !== undefined ? (argv.config ?? '') : configFile(argv.config, 2);
      if (config !== undefined) process.exitCode = await runStatus({ ...argv, config });
    },
  )
  .command('allowlist', 'Build allow lists from what other domains publish', (y) =>
    y
      .command(
        'spf <domains..>',
        'Walk the domains\' SPF records (include, redirect, ip4, ip6, a, mx) and print the networks they send from, as a .cidr list',
        (z) =>
          z
            .positional('domains', { type: 'string', array: true, demandOption: true, default: undefined, describe: 'Domains whose senders to list (google.com outlook.com …)' })
            .option('output', { alias: 'o', type: 'string', describe: 'Write the list to this file, atomically (temporary file and rename), instead of stdout; left as it was when nothing is found' })
            .option('config', { alias: 'c', type: 'string', describe: `${CONFIG_HELP}; its dns.servers and dns.timeout are used` })
            .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Print errors only, not warnings' })
            .fail(usageExit)
            .epilog('Exit status: 0 every domain walked cleanly (warnings allowed); 1 an error was reported (the list still holds what was found elsewhere), nothing was found, or the file could not be written; 2 usage or configuration error. See docs/allowlist-spf.md.'),
        async (argv) => {
          const config = configFile(argv.config, EXIT_USAGE);
          if (config !== undefined) process.exitCode = await runAllowlistSpf({ config, domains: argv.domains, output: argv.output, quiet: argv.quiet });
        },
      )
      .demandCommand(1, 'Name a list to build: spf')
      .fail(usageExit),
  )
  .command(
    'init',
    'Write the packaged configuration and policy files into a directory for the admin to edit; never overwrites a file',
    (y) => y.option('dir', { type: 'string', default: DEFAULT_INIT_DIR, describe: 'Directory to write: <dir>/smtp-tarpit.yaml and <dir>/policies/' }),
    (argv) => {
      process.exitCode = runInit({ dir: argv.dir });
    },
  )
  .command('version', 'Print the version', {}, () => {
    console.log(VERSION);
  })
  .demandCommand(1, 'Name a command: serve, check, explain, status, allowlist, init or version')
  .strict()
  .version(VERSION)
  .help()
  .parseAsync();
