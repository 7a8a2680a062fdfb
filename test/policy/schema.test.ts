import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { POLICY_SCHEMA_FILE, policySchemaText } from '../../scripts/gen-schema.js';
import { POLICY_SCHEMA } from '../../src/policy/schema.js';

test('policies/policy.schema.json is generated from POLICY_SCHEMA (run `npm run schema` after changing it)', () => {
  assert.equal(readFileSync(POLICY_SCHEMA_FILE, 'utf8'), policySchemaText());
});

test('policies/policy.yaml points editors at the schema on its first line', () => {
  const [first] = readFileSync('policies/policy.yaml', 'utf8').split('\n');
  assert.equal(first, '# yaml-language-server: $schema=./policy.schema.json');
});

type Node = Record<string, unknown>;

/** Every object schema, with its path, for the two rules below. */
function objects(node: unknown, path: string, out: [string, Node][] = []): [string, Node][] {
  if (node === null || typeof node !== 'object') return out;
  const n = node as Node;
  if (n.type === 'object') out.push([path, n]);
  for (const [key, child] of Object.entries(n)) {
    if (key === 'default') continue;
    if (Array.isArray(child)) child.forEach((c, i) => objects(c, `${path}/${key}/${i}`, out));
    else objects(child, `${path}/${key}`, out);
  }
  return out;
}

test('every object in the schema refuses unknown keys, so a typo is an error and not a silent default', () => {
  const open = objects(POLICY_SCHEMA, '#').filter(([, o]) => o.additionalProperties !== false && typeof o.additionalProperties !== 'object');
  assert.deepEqual(open.map(([p]) => p), []);
});

test('every setting an admin can write has a description', () => {
  const missing: string[] = [];
  let settings = 0;
  for (const [path, o] of objects(POLICY_SCHEMA, '#')) {
    for (const [key, prop] of Object.entries((o.properties ?? {}) as Record<string, Node>)) {
      settings++;
      if (typeof prop.description !== 'string' || prop.description.length < 10) missing.push(`${path}/${key}`);
    }
  }
  assert.ok(settings > 50, `walked only ${settings} settings`);
  assert.deepEqual(missing, []);
});
