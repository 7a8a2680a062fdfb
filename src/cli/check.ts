/**
 * `smtp-tarpit check`: the pre-deploy gate (docs/design.md §5). Validates the
 * configuration and the policy directory it names (or `--policies`), prints
 * every mistake as `file:line:col: key: reason` and exits 1 on any; warnings
 * are printed but do not fail the check.
 */
import { dirname, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile } from '../config/load.js';
import { CONFIG_SCHEMA } from '../config/schema.js';
import { YamlFile } from '../config/yaml-schema.js';
import { loadPolicyDirWithWarnings } from '../policy/load.js';
import { PolicyErrors } from '../policy/policy-error.js';

export interface CheckArgs {
  readonly config: string;
  /** Overrides the configuration's `policies` directory. */
  readonly policies?: string | undefined;
}

export function runCheck(args: CheckArgs): number {
  let failed = false;
  let policiesDir = args.policies;
  try {
    const config = loadConfigFile(args.config, { policies: args.policies });
    console.log(`${args.config}: ok (listen ${config.listen.host}:${config.listen.port}, backend ${config.backend.address.host}:${config.backend.address.port})`);
    policiesDir ??= config.policies;
  } catch (err) {
    if (!(err instanceof ConfigErrors)) throw err;
    for (const e of err.errors) console.error(e.message);
    failed = true;
    // A broken configuration should not hide the policy's mistakes.
    policiesDir ??= policiesOf(args.config);
  }

  try {
    const { policy, warnings } = loadPolicyDirWithWarnings(policiesDir);
    for (const w of warnings) console.error(`warning: ${w.message}`);
    const { allow, block } = policy.lists;
    const known = policy.knownSenders;
    console.log(
      `${resolve(policy.file)}: ok (allow ${count(allow.size, 'entry', 'entries')}, block ${count(block.list.size, 'entry', 'entries')}, ` +
        `${count(policy.dnsbl.length, 'DNSBL zone')}, ${count(policy.dnswl.length, 'DNSWL zone')}, ${count(policy.profiles.size, 'profile')}, ` +
        `first contact ${policy.firstContact.enabled ? `held with "${policy.firstContact.profile.name}", retries relayed after ${policy.firstContact.minRetryDelay} s` : 'not held'}, ` +
        `known senders: ${count(known.rdnsSuffixes.length, 'rDNS suffix', 'rDNS suffixes')} and ${count(known.networks.size, 'network')})`,
    );
  } catch (err) {
    if (!(err instanceof PolicyErrors)) throw err;
    for (const e of err.errors) console.error(e.message);
    failed = true;
  }
  return failed ? 1 : 0;
}

/** The policy directory a configuration file names, read as leniently as possible. */
function policiesOf(configFile: string): string {
  const fallback = CONFIG_SCHEMA.properties.policies.default;
  let named: unknown;
  try {
    named = YamlFile.parse(readFileSync(configFile, 'utf8'), configFile).value?.policies;
  } catch {
    named = undefined;
  }
  return resolve(dirname(resolve(configFile)), typeof named === 'string' ? named : fallback);
}

function count(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
