/**
 * Reads a YAML configuration file, validates it against CONFIG_SCHEMA, applies
 * command-line overrides and returns a deep-frozen Config. Every mistake names
 * file, line, column and key; all of them are reported at once.
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { ErrorObject } from 'ajv';
import { ConfigError, ConfigErrors } from './config-error.js';
import { isEmptyYaml } from './empty-file.js';
import { parseEndpoint } from './endpoint.js';
import { CONFIG_SCHEMA, type Config } from './schema.js';
import { YamlFile, compileSchema, schemaIssues, type Located, type SchemaIssue, type YamlPath, deepFreeze } from './yaml-schema.js';

/** Command-line flags that override the file (docs/design.md §3 config). */
export interface ConfigOverrides {
  readonly listen?: string | undefined;
  readonly backend?: string | undefined;
  readonly metrics?: string | undefined;
  readonly policies?: string | undefined;
  readonly workers?: number | undefined;
  /** `memory` or `redis://HOST:PORT[/DB]` (state.store). */
  readonly store?: string | undefined;
}

const validate = compileSchema(CONFIG_SCHEMA);

type Raw = Record<string, unknown>;

export function loadConfigFile(file: string, overrides: ConfigOverrides = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigErrors([new ConfigError(file, undefined, undefined, '', `cannot read: ${(err as Error).message}`)]);
  }
  // A 0-byte file is a failed copy far more often than a wish for the defaults (issue 12); `{}` says the latter.
  if (isEmptyYaml(text)) throw new ConfigErrors([new ConfigError(file, 1, 1, '', 'the file is empty (nothing but blanks or comments); write {} to run on the defaults')]);
  return loadConfigText(text, file, overrides);
}

export function loadConfigText(text: string, file: string, overrides: ConfigOverrides = {}): Config {
  const yaml = YamlFile.parse(text, file);
  if (yaml.value === undefined) throw new ConfigErrors(yaml.issues.map((l) => ConfigError.from(l)));
  const raw = yaml.value;
  applyOverrides(raw, overrides);
  const issues = schemaIssues(validate(raw), yaml, { schemaFile: 'config/smtp-tarpit.schema.json', reason: endpointReason });
  return finish(raw, yaml, overrides, issues);
}

/** The shipped defaults alone, as if from an empty file. */
export function defaultConfig(overrides: ConfigOverrides = {}): Config {
  return loadConfigText('{}', '(defaults)', overrides);
}

function applyOverrides(raw: Raw, o: ConfigOverrides): void {
  const section = (key: string): Raw => {
    const v = raw[key];
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Raw;
    const fresh: Raw = {};
    raw[key] = fresh;
    return fresh;
  };
  if (o.listen !== undefined) raw.listen = o.listen;
  if (o.backend !== undefined) section('backend').address = o.backend;
  if (o.metrics !== undefined) section('metrics').listen = o.metrics === 'off' ? null : o.metrics;
  if (o.policies !== undefined) raw.policies = resolve(o.policies);
  if (o.workers !== undefined) raw.workers = o.workers;
  if (o.store !== undefined) section('state').store = o.store;
}

/** Every pattern in the schema but state.store's is an endpoint; anyOf is metrics.listen (endpoint or null). */
function endpointReason(e: ErrorObject): string | undefined {
  if (e.instancePath === '/state/store') return 'must be memory or redis://HOST:PORT[/DB] (rediss:// for TLS)';
  if (e.keyword === 'anyOf') return 'must be host:port (IPv6 as [::1]:25) or null';
  if (e.keyword === 'pattern') return 'must be host:port (IPv6 as [::1]:25)';
  return undefined;
}

const FLAG_FOR_PATH: Record<string, keyof ConfigOverrides> = {
  listen: 'listen',
  'backend/address': 'backend',
  'metrics/listen': 'metrics',
  workers: 'workers',
  'state/store': 'store',
};

/** The mistake at `issue.path`; a bad flag is the command line's mistake, not the file's. */
function configError(issue: Located & { readonly path: YamlPath }, overrides: ConfigOverrides): ConfigError {
  const flag = FLAG_FOR_PATH[issue.path.join('/')];
  if (flag && overrides[flag] !== undefined) return new ConfigError('command line', undefined, undefined, `--${flag}`, issue.reason);
  return ConfigError.from(issue);
}

/** Whether one path lies on the other: a wrong shape there says nothing can be read below it. */
function onPath(a: YamlPath, b: YamlPath): boolean {
  const n = Math.min(a.length, b.length);
  return a.slice(0, n).every((segment, i) => segment === b[i]);
}

/**
 * Runs the checks the schema cannot express even when the schema found
 * mistakes, so an admin sees every mistake of the file at once (issue 13)
 * rather than one more after each fix. A check runs only on settings no schema
 * issue lies on: their shape is then the schema's, and a setting the schema
 * already refused is not blamed twice.
 */
function finish(raw: Raw, yaml: YamlFile, overrides: ConfigOverrides, issues: readonly SchemaIssue[]): Config {
  const file = yaml.file;
  // Where no schema issue lies, ajv filled every default and vouches for the shapes read below.
  const r = raw as unknown as Omit<Config, 'listen' | 'backend' | 'metrics' | 'hostname' | 'source'> & {
    listen: string;
    hostname?: string;
    backend: Omit<Config['backend'], 'address' | 'heloName' | 'maxPerGroup'> & { address: string; heloName?: string; maxPerGroup?: number };
    metrics: { listen: string | null };
  };
  const errors: ConfigError[] = issues.map((issue) => configError(issue, overrides));
  // An unknown key leaves the shape of its neighbours as the schema says.
  const shaky = issues.filter((i) => i.keyword !== 'additionalProperties' && i.keyword !== 'propertyNames').map((i) => i.path);
  const sound = (...paths: YamlPath[]) => paths.every((p) => !shaky.some((s) => onPath(s, p)));
  const unset = { host: '127.0.0.1', port: 0 };
  const endpoint = (key: string, value: () => string) => {
    const path = key.split('.');
    if (!sound(path)) return unset;
    try {
      return parseEndpoint(value());
    } catch (err) {
      errors.push(configError({ ...yaml.issue(path, (err as Error).message), path }, overrides));
      return unset;
    }
  };
  const listen = endpoint('listen', () => r.listen);
  const address = endpoint('backend.address', () => r.backend.address);
  const metricsListen = sound(['metrics', 'listen']) && r.metrics.listen === null ? null : endpoint('metrics.listen', () => r.metrics.listen ?? '');
  if (sound(['tls', 'key'], ['tls', 'cert']) && (r.tls.key === undefined) !== (r.tls.cert === undefined)) {
    errors.push(ConfigError.from(yaml.issue(['tls'], 'set both key and cert, or neither')));
  }
  // Switching user without choosing the group (or the reverse) would keep root's group.
  if (sound(['user'], ['group']) && (r.user === undefined) !== (r.group === undefined)) {
    errors.push(ConfigError.from(yaml.issue([r.user === undefined ? 'group' : 'user'], 'set both user and group, or neither')));
  }
  if (sound(['backend', 'warm'], ['backend', 'poolSize']) && r.backend.warm > r.backend.poolSize) {
    errors.push(ConfigError.from(yaml.issue(['backend', 'warm'], `must not exceed backend.poolSize (${r.backend.poolSize})`)));
  }
  // Held clients count against maxConnections too: a tarpit allowed to fill it
  // would refuse clean clients, which the tarpit must never do.
  if (sound(['tarpit', 'maxHeld'], ['limits', 'maxConnections']) && r.tarpit.maxHeld >= r.limits.maxConnections) {
    errors.push(ConfigError.from(yaml.issue(['tarpit', 'maxHeld'], `must be below limits.maxConnections (${r.limits.maxConnections}), leaving room for clean clients`)));
  }
  // File order, as policy files report theirs; the command line's mistakes (no line) first.
  if (errors.length > 0) throw new ConfigErrors([...errors].sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0)));
  const hostname = r.hostname ?? osHostname();
  const base = file === '(defaults)' ? process.cwd() : dirname(resolve(file));
  const config: Config = {
    ...r,
    source: file,
    hostname,
    listen,
    policies: resolve(base, r.policies),
    // Like the policy directory, certificate files are found beside the configuration, wherever it is run from.
    tls: {
      ...r.tls,
      ...(r.tls.key === undefined ? {} : { key: resolve(base, r.tls.key) }),
      ...(r.tls.cert === undefined ? {} : { cert: resolve(base, r.tls.cert) }),
    },
    backend: {
      ...r.backend,
      address,
      heloName: r.backend.heloName ?? hostname,
      // A share, not a number: it has to follow poolSize. A tenth lets the five networks of issue 12's attack hold half the pool at most.
      maxPerGroup: r.backend.maxPerGroup ?? Math.max(1, Math.floor(r.backend.poolSize / 10)),
    },
    metrics: { listen: metricsListen },
  };
  return deepFreeze(config);
}
