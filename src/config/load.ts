/**
 * Reads a YAML configuration file, validates it against CONFIG_SCHEMA, applies
 * command-line overrides and returns a deep-frozen Config. Every mistake names
 * file, line, column and key; all of them are reported at once.
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, type Document } from 'yaml';
import { ConfigError, ConfigErrors } from './config-error.js';
import { parseEndpoint } from './endpoint.js';
import { CONFIG_SCHEMA, type Config } from './schema.js';

/** Command-line flags that override the file (DESIGN §3 config). */
export interface ConfigOverrides {
  readonly listen?: string | undefined;
  readonly backend?: string | undefined;
  readonly metrics?: string | undefined;
  readonly policies?: string | undefined;
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true });
const validate = ajv.compile(CONFIG_SCHEMA);

type Raw = Record<string, unknown>;

export function loadConfigFile(file: string, overrides: ConfigOverrides = {}): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigErrors([new ConfigError(file, undefined, undefined, '', `cannot read: ${(err as Error).message}`)]);
  }
  return loadConfigText(text, file, overrides);
}

export function loadConfigText(text: string, file: string, overrides: ConfigOverrides = {}): Config {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigErrors(
      doc.errors.map((e) => {
        const pos = lineCounter.linePos(e.pos[0]);
        return new ConfigError(file, pos.line, pos.col, '', e.message.split('\n')[0] ?? 'YAML syntax error');
      }),
    );
  }
  const parsed: unknown = doc.contents === null ? {} : doc.toJS();
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigErrors([new ConfigError(file, 1, 1, '', 'the file must hold a mapping of settings')]);
  }
  const raw = parsed as Raw;
  applyOverrides(raw, overrides);
  if (!validate(raw)) {
    throw new ConfigErrors(significant(validate.errors ?? []).map((e) => locate(e, doc, lineCounter, file, overrides)));
  }
  return finish(raw, file);
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
}

/** An anyOf failure also reports each branch's failure; keep the anyOf alone. */
function significant(errors: readonly ErrorObject[]): ErrorObject[] {
  const anyOfPaths = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));
  return errors.filter((e) => e.keyword === 'anyOf' || !anyOfPaths.has(e.instancePath));
}

const FLAG_FOR_PATH: Record<string, keyof ConfigOverrides> = {
  '/listen': 'listen',
  '/backend/address': 'backend',
  '/metrics/listen': 'metrics',
};

function locate(e: ErrorObject, doc: Document, lc: LineCounter, file: string, overrides: ConfigOverrides): ConfigError {
  const segments = e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  let key = segments.join('.');
  let reason = e.message ?? 'is invalid';
  if (e.keyword === 'additionalProperties') {
    const extra = (e.params as { additionalProperty: string }).additionalProperty;
    segments.push(extra);
    key = segments.join('.');
    reason = 'unknown setting (check the spelling; see config/smtp-tarpit.schema.json)';
  } else if (e.keyword === 'enum') {
    reason = `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  } else if (e.keyword === 'pattern' || e.keyword === 'anyOf') {
    // Every pattern in the schema is an endpoint; anyOf is metrics.listen (endpoint or null).
    reason = e.keyword === 'anyOf' ? 'must be host:port (IPv6 as [::1]:25) or null' : 'must be host:port (IPv6 as [::1]:25)';
  }
  const flag = FLAG_FOR_PATH[e.instancePath];
  if (flag && overrides[flag] !== undefined) return new ConfigError('command line', undefined, undefined, `--${flag}`, reason);
  // Point at the key itself for unknown keys, at the value otherwise.
  const node = doc.getIn(segments, true) as { range?: [number, number, number] } | undefined;
  let offset = node?.range?.[0];
  if (e.keyword === 'additionalProperties') {
    const parent = segments.length > 1 ? doc.getIn(segments.slice(0, -1), true) : doc.contents;
    if (isMap(parent)) {
      const pair = parent.items.find((p) => (p.key as { value?: unknown } | null)?.value === segments[segments.length - 1]);
      offset = (pair?.key as { range?: [number, number, number] } | null)?.range?.[0];
    }
  }
  if (offset === undefined) return new ConfigError(file, undefined, undefined, key, reason);
  const pos = lc.linePos(offset);
  return new ConfigError(file, pos.line, pos.col, key, reason);
}

function finish(raw: Raw, file: string): Config {
  // ajv filled every default; the schema guarantees the shapes read below.
  const r = raw as unknown as Omit<Config, 'listen' | 'backend' | 'metrics' | 'hostname' | 'source'> & {
    listen: string;
    hostname?: string;
    backend: Omit<Config['backend'], 'address' | 'heloName'> & { address: string; heloName?: string };
    metrics: { listen: string | null };
  };
  const errors: ConfigError[] = [];
  const endpoint = (key: string, value: string) => {
    try {
      return parseEndpoint(value);
    } catch (err) {
      errors.push(new ConfigError(file, undefined, undefined, key, (err as Error).message));
      return { host: '127.0.0.1', port: 0 };
    }
  };
  const hostname = r.hostname ?? osHostname();
  const base = file === '(defaults)' ? process.cwd() : dirname(resolve(file));
  const config: Config = {
    ...r,
    source: file,
    hostname,
    listen: endpoint('listen', r.listen),
    policies: resolve(base, r.policies),
    backend: { ...r.backend, address: endpoint('backend.address', r.backend.address), heloName: r.backend.heloName ?? hostname },
    metrics: { listen: r.metrics.listen === null ? null : endpoint('metrics.listen', r.metrics.listen) },
  };
  if ((config.tls.key === undefined) !== (config.tls.cert === undefined)) {
    errors.push(new ConfigError(file, undefined, undefined, 'tls', 'set both key and cert, or neither'));
  }
  if (config.backend.warm > config.backend.poolSize) {
    errors.push(new ConfigError(file, undefined, undefined, 'backend.warm', `must not exceed backend.poolSize (${config.backend.poolSize})`));
  }
  if (errors.length > 0) throw new ConfigErrors(errors);
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
