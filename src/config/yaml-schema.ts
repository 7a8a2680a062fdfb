/**
 * What the configuration and the policy loaders share: parse a YAML file that
 * must hold a mapping, validate it against a JSON Schema with ajv (filling the
 * schema's defaults), and point every mistake at file:line:column and its
 * dotted key, so an admin goes straight to it. Nothing here throws for bad
 * input: callers get located issues and decide which error type to raise
 * (both error types extend LocatedError, below).
 */
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, visit, type Document } from 'yaml';

const MAX_SYNTAX_ERRORS = 20;

/** One mistake or warning, located as precisely as the input allows. */
export interface Located {
  readonly file: string;
  /** 1-based; undefined when the mistake is not in a file's content (a file that cannot be read). */
  readonly line: number | undefined;
  readonly column: number | undefined;
  /** Dotted key (`backend.poolSize`, `dnsbl.0.zone`), or '' for the whole file. */
  readonly key: string;
  readonly reason: string;
}

/** `file:line:col: key: reason`, the form every loader prints. */
export function formatLocated(l: Located): string {
  return `${l.file}${l.line === undefined ? '' : `:${l.line}:${l.column ?? 1}`}: ${l.key ? `${l.key}: ` : ''}${l.reason}`;
}

/**
 * A located mistake as an error: ConfigError and PolicyError differ only in
 * their name and code, which each subclass sets. `message` is `formatLocated`.
 */
export abstract class LocatedError extends Error implements Located {
  abstract override readonly name: string;
  abstract readonly code: string;

  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly column: number | undefined,
    readonly key: string,
    readonly reason: string,
  ) {
    super(formatLocated({ file, line, column, key, reason }));
  }

  /** One of the loader's issues as this subclass's error. */
  static from<E extends LocatedError>(this: new (...args: ConstructorParameters<typeof LocatedError>) => E, l: Located): E {
    return new this(l.file, l.line, l.column, l.key, l.reason);
  }
}

/** Every mistake of one load, so `check` prints them all; `message` has one line per mistake. */
export abstract class LocatedErrors<E extends LocatedError> extends Error {
  abstract override readonly name: string;
  abstract readonly code: string;

  constructor(readonly errors: readonly E[]) {
    super(errors.map((e) => e.message).join('\n'));
  }
}

/** A path into the document: mapping keys and sequence indexes, as ajv's instancePath spells them. */
export type YamlPath = readonly string[];

/** A parsed YAML file that can say where any path in it was written. */
export class YamlFile {
  /** The top-level mapping as plain data; undefined when `issues` says why there is none. */
  readonly value: Record<string, unknown> | undefined;
  /** Syntax errors, or a top level that is not a mapping. */
  readonly issues: readonly Located[];
  /** Accepted but doubtful (an unknown tag). */
  readonly warnings: readonly Located[];

  private constructor(
    readonly file: string,
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {
    const issues: Located[] = doc.errors.slice(0, MAX_SYNTAX_ERRORS).map((e) => this.at(e.pos[0], '', firstLine(e.message, 'YAML syntax error')));
    const more = doc.errors[MAX_SYNTAX_ERRORS];
    // Past a screenful, more errors only bury the first, which is usually the cause.
    if (more) issues.push(this.at(more.pos[0], '', `and ${doc.errors.length - MAX_SYNTAX_ERRORS} more YAML syntax errors from here on`));
    // A mapping or alias as a key would be stringified (with a process warning); no setting is named that way.
    visit(doc, {
      Pair: (_, pair) => {
        if (pair.key !== null && !isScalar(pair.key)) issues.push(this.at(rangeStart(pair.key) ?? 0, '', 'a key must be a plain name'));
      },
    });
    this.warnings = doc.warnings.map((w) => this.at(w.pos[0], '', firstLine(w.message, 'YAML warning')));
    let value: Record<string, unknown> | undefined;
    if (issues.length === 0) {
      let parsed: unknown;
      try {
        parsed = doc.contents === null ? {} : doc.toJS();
      } catch (err) {
        // yaml throws for alias bombs (too many alias expansions) and the like.
        parsed = undefined;
        issues.push(this.at(0, '', (err as Error).message));
      }
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) value = parsed as Record<string, unknown>;
      else if (issues.length === 0) issues.push({ file, line: 1, column: 1, key: '', reason: 'the file must hold a mapping of settings' });
    }
    this.value = value;
    this.issues = issues;
  }

  static parse(text: string, file: string): YamlFile {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    return new YamlFile(file, doc, lines);
  }

  /**
   * An issue at `path`: at the key itself with `at: 'key'` (an unknown setting),
   * at its value otherwise. A path the file does not spell out (a default, a
   * missing key) is placed at its nearest written ancestor, and at worst at
   * 1:1, so an issue about the file's content always has a line.
   */
  issue(path: YamlPath, reason: string, at: 'key' | 'value' = 'value'): Located {
    return this.at(this.offsetOf(path, at), path.join('.'), reason);
  }

  /** Whether the file spells `path` out (rather than leaving it to a default). */
  written(path: YamlPath): boolean {
    return this.find(path, 'value').found;
  }

  private at(offset: number, key: string, reason: string): Located {
    const pos = this.lines.linePos(offset);
    return { file: this.file, line: pos.line, column: pos.col, key, reason };
  }

  private offsetOf(path: YamlPath, at: 'key' | 'value'): number {
    return this.find(path, at).offset;
  }

  /**
   * Where `path` was written: its value (or key) when the whole path is there;
   * otherwise the key of its deepest written ancestor, where the missing
   * setting belongs.
   */
  private find(path: YamlPath, at: 'key' | 'value'): { offset: number; found: boolean } {
    let node: unknown = this.doc.contents;
    let valueOffset = rangeStart(node) ?? 0;
    let ancestorOffset = valueOffset;
    for (const [i, segment] of path.entries()) {
      if (isAlias(node)) node = node.resolve(this.doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === segment);
        if (!pair) return { offset: ancestorOffset, found: false };
        const keyOffset = rangeStart(pair.key) ?? valueOffset;
        // `key:` with nothing after it has no value node: point at the key.
        valueOffset = i === path.length - 1 && at === 'key' ? keyOffset : (rangeStart(pair.value) ?? keyOffset);
        ancestorOffset = keyOffset;
        node = pair.value;
      } else if (isSeq(node)) {
        const item: unknown = /^\d+$/.test(segment) ? node.items[Number(segment)] : undefined;
        if (item === undefined) return { offset: ancestorOffset, found: false };
        valueOffset = rangeStart(item) ?? valueOffset;
        ancestorOffset = valueOffset;
        node = item;
      } else {
        return { offset: ancestorOffset, found: false };
      }
    }
    return { offset: valueOffset, found: true };
  }
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as { range?: readonly number[] } | null | undefined)?.range;
  return range?.[0];
}

function firstLine(message: string, fallback: string): string {
  return message.split('\n')[0]?.trim() || fallback;
}

/** A validator that fills the schema's defaults into the value it checks and returns every error. */
export type SchemaValidator = (value: Record<string, unknown>) => readonly ErrorObject[];

export function compileSchema(schema: object): SchemaValidator {
  const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true });
  const validate = ajv.compile(schema);
  return (value) => (validate(value) ? [] : significant(validate.errors ?? []));
}

/**
 * An anyOf failure also reports each branch's failure. When the value has the
 * shape of a branch (its errors are inside the value or about its keys), those
 * say what is wrong and the anyOf is dropped; otherwise the anyOf alone says
 * what shapes are accepted.
 */
function significant(errors: readonly ErrorObject[]): ErrorObject[] {
  const dropped = new Set<ErrorObject>();
  for (const anyOf of errors.filter((e) => e.keyword === 'anyOf')) {
    const branch = errors.filter(
      (e) => e !== anyOf && e.schemaPath.startsWith(`${anyOf.schemaPath}/`) && (e.instancePath === anyOf.instancePath || e.instancePath.startsWith(`${anyOf.instancePath}/`)),
    );
    const structural = new Set(branch.filter((e) => e.instancePath !== anyOf.instancePath || e.keyword === 'required' || e.keyword === 'additionalProperties'));
    for (const e of branch) if (!structural.has(e)) dropped.add(e);
    if (structural.size > 0) dropped.add(anyOf);
  }
  return errors.filter((e) => !dropped.has(e));
}

/** A schema error located in its file, with the path and keyword kept for callers that special-case some. */
export interface SchemaIssue extends Located {
  readonly path: YamlPath;
  readonly keyword: string;
}

export interface SchemaIssueOptions {
  /** Named in the reason for an unknown key, so the admin knows where the valid ones are listed. */
  readonly schemaFile: string;
  /** A better reason for some errors (a pattern's meaning); undefined keeps the default. */
  readonly reason?: (e: ErrorObject, path: YamlPath) => string | undefined;
}

/** Turns ajv's errors into located issues: unknown keys at the key, everything else at the value. */
export function schemaIssues(errors: readonly ErrorObject[], yaml: YamlFile, options: SchemaIssueOptions): SchemaIssue[] {
  // A bad key under propertyNames comes twice: the inner failure (carrying
  // `propertyName`) and the propertyNames one; keep the latter.
  return errors.filter((e) => (e as { propertyName?: string }).propertyName === undefined).map((e) => {
    const path = e.instancePath === '' ? [] : e.instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
    let reason = options.reason?.(e, path);
    if (e.keyword === 'additionalProperties' || e.keyword === 'propertyNames') {
      const params = e.params as { additionalProperty?: string; propertyName?: string };
      path.push(params.additionalProperty ?? params.propertyName ?? '');
      reason ??= e.keyword === 'propertyNames' ? 'is not an allowed name' : `unknown setting (check the spelling; see ${options.schemaFile})`;
      return { ...yaml.issue(path, reason, 'key'), path, keyword: e.keyword };
    }
    reason ??= defaultReason(e);
    return { ...yaml.issue(path, reason), path, keyword: e.keyword };
  });
}

const TYPE_WORDS: Readonly<Record<string, string>> = {
  // YAML 1.2 reads yes/no/on/off as text; Postfix admins write them.
  boolean: 'true or false',
  // .inf and .nan are YAML numbers but never a valid setting.
  number: 'a finite number',
  integer: 'a whole number',
  string: 'text',
  object: 'a mapping (key: value lines)',
  array: 'a list',
  null: 'null',
};

function defaultReason(e: ErrorObject): string {
  switch (e.keyword) {
    case 'enum':
      return `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'type': {
      const type = (e.params as { type: string | string[] }).type;
      return typeof type === 'string' && type in TYPE_WORDS ? `must be ${TYPE_WORDS[type]}` : (e.message ?? 'has the wrong type');
    }
    case 'required':
      return `missing required setting "${(e.params as { missingProperty: string }).missingProperty}"`;
    default:
      return e.message ?? 'is invalid';
  }
}

/** Freezes a loaded configuration or policy all the way down; what is frozen already (a compiled list shared between loads) is left as it is. */
export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}
