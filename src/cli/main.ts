#!/usr/bin/env node
/**
 * The command line (yargs wiring only): serve, check, version. Only src/cli/
 * may end the process.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { runCheck } from './check.js';
import { runServe } from './serve.js';
import { VERSION } from './version.js';

const DEFAULT_CONFIG = 'config/smtp-tarpit.yaml';

await yargs(hideBin(process.argv))
  .scriptName('smtp-tarpit')
  .usage('$0 <command> [options]')
  .command(
    'serve',
    'Listen for SMTP and relay clean sessions to the backend MTA',
    (y) =>
      y
        .option('config', { alias: 'c', type: 'string', default: DEFAULT_CONFIG, describe: 'Configuration file (YAML)' })
        .option('listen', { type: 'string', describe: 'Override listen, HOST:PORT ([::1]:2525 for IPv6)' })
        .option('backend', { type: 'string', describe: 'Override backend.address, HOST:PORT' })
        .option('metrics', { type: 'string', describe: 'Override metrics.listen, HOST:PORT, or "off"' })
        .option('policies', { type: 'string', describe: 'Override the policy directory' }),
    async (argv) => {
      process.exitCode = await runServe(argv);
    },
  )
  .command(
    'check',
    'Validate the configuration and the policy files; exit 1 naming file, line and reason',
    (y) =>
      y
        .option('config', { alias: 'c', type: 'string', default: DEFAULT_CONFIG, describe: 'Configuration file (YAML)' })
        .option('policies', { type: 'string', describe: 'Policy directory to check instead of the one the configuration names' }),
    (argv) => {
      process.exitCode = runCheck(argv);
    },
  )
  // `explain` goes here.
  .command('version', 'Print the version', {}, () => {
    console.log(VERSION);
  })
  .demandCommand(1, 'Name a command: serve, check or version')
  .strict()
  .version(VERSION)
  .help()
  .parseAsync();
