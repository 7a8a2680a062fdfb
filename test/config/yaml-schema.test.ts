import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, ConfigErrors } from '../../src/config/config-error.js';
import { LocatedError, type Located, type LocatedErrors, YamlFile, compileSchema, formatLocated, schemaIssues } from '../../src/config/yaml-schema.js';
import { PolicyError, PolicyErrors } from '../../src/policy/policy-error.js';

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    section: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: { size: { type: 'integer', minimum: 1, default: 3 }, on: { type: 'boolean', default: true } },
    },
    items: { type: 'array', items: { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string' } } } },
    either: { anyOf: [{ const: 'auto' }, { type: 'object', additionalProperties: false, required: ['n'], properties: { n: { type: 'integer' } } }] },
  },
} as const;
const validate = compileSchema(SCHEMA);

function issues(text: string): string[] {
  const yaml = YamlFile.parse(text, 'f.yaml');
  if (yaml.value === undefined) return yaml.issues.map(formatLocated);
  return schemaIssues(validate(yaml.value), yaml, { schemaFile: 's.json' }).map(formatLocated);
}

test('defaults are filled into the parsed value', () => {
  const yaml = YamlFile.parse('section: {on: false}\n', 'f.yaml');
  assert.deepEqual(validate(yaml.value ?? {}), []);
  assert.deepEqual(yaml.value, { section: { on: false, size: 3 } });
});

test('unknown keys point at the key, bad values at the value, sequence items by index', () => {
  assert.deepEqual(issues('section:\n  sise: 2\n  on: yes\nitems:\n  - name: a\n  - nme: b\n'), [
    'f.yaml:2:3: section.sise: unknown setting (check the spelling; see s.json)',
    'f.yaml:3:7: section.on: must be true or false',
    'f.yaml:6:5: items.1: missing required setting "name"',
    'f.yaml:6:5: items.1.nme: unknown setting (check the spelling; see s.json)',
  ]);
});

test('anyOf: a value shaped like a branch gets that branch\'s errors, anything else the anyOf', () => {
  assert.deepEqual(issues('either: {n: x}\n'), ['f.yaml:1:13: either.n: must be a whole number']);
  assert.deepEqual(issues('either: manual\n'), ['f.yaml:1:9: either: must match a schema in anyOf']);
});

test('a path the file does not spell out is placed at its nearest written ancestor, never without a line', () => {
  const yaml = YamlFile.parse('# c\nsection:\n  on: true\n', 'f.yaml');
  assert.deepEqual(yaml.issue(['section', 'size'], 'x'), { file: 'f.yaml', line: 2, column: 1, key: 'section.size', reason: 'x' });
  assert.equal(yaml.issue(['nowhere', 'deep'], 'x').line, 2, 'the mapping itself, after the comment');
  assert.equal(yaml.written(['section', 'on']), true);
  assert.equal(yaml.written(['section', 'size']), false);
  const empty = YamlFile.parse('', 'f.yaml');
  assert.deepEqual(empty.value, {});
  assert.equal(empty.issue(['a'], 'x').line, 1);
});

test('syntax errors are located and capped; collection keys and non-mappings are refused', () => {
  assert.match(issues('section: {size: 1\n')[0] ?? '', /^f\.yaml:\d+:\d+: /);
  const many = issues(Array.from({ length: 60 }, () => 'a: b: c').join('\n'));
  assert.equal(many.length, 21);
  assert.match(many[20] ?? '', /more YAML syntax errors from here on$/);
  assert.deepEqual(issues('? [a, b]\n: 1\n'), ['f.yaml:1:3: a key must be a plain name']);
  assert.deepEqual(issues('just text\n'), ['f.yaml:1:1: the file must hold a mapping of settings']);
  assert.match(issues('a: &a [*a]\n')[0] ?? '', /^f\.yaml:1:\d+: /);
});

/** A located error class and its many-errors class, as `check` and the loaders use them. */
function assertLocatedErrors<E extends LocatedError>(
  Single: (new (...args: ConstructorParameters<typeof LocatedError>) => E) & { from(l: Located): E },
  Many: new (errors: readonly E[]) => LocatedErrors<E>,
  name: string,
  code: string,
): void {
  const l = { file: 'policies/policy.yaml', line: 4, column: 9, key: 'dnsbl.0.zone', reason: 'must be a domain' };
  const err = Single.from(l);
  assert.ok(err instanceof Single && err instanceof LocatedError);
  assert.deepEqual([err.name, err.code, err.file, err.line, err.column, err.key, err.reason], [name, code, l.file, 4, 9, l.key, l.reason]);
  assert.equal(err.message, 'policies/policy.yaml:4:9: dnsbl.0.zone: must be a domain');
  const unread = new Single('missing.yaml', undefined, undefined, '', 'cannot read: no such file');
  assert.equal(unread.message, 'missing.yaml: cannot read: no such file');
  const all = new Many([err, unread]);
  assert.ok(all instanceof Many);
  assert.deepEqual([all.name, all.code, all.errors.length], [`${name}s`, code, 2]);
  assert.equal(all.message, `${err.message}\n${unread.message}`);
}

test('ConfigError and PolicyError: one located shape, their own name, code and class', () => {
  assertLocatedErrors(ConfigError, ConfigErrors, 'ConfigError', 'TARPIT_ERR_CONFIG');
  assertLocatedErrors(PolicyError, PolicyErrors, 'PolicyError', 'TARPIT_ERR_POLICY');
  const l = { file: 'config.yaml', line: 1, column: 1, key: '', reason: 'x' };
  assert.ok(!(ConfigError.from(l) instanceof PolicyError), 'a config mistake is not a policy one');
});
