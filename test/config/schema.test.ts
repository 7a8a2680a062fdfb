import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SCHEMA_FILE, schemaText } from '../../scripts/gen-schema.js';

test('config/smtp-tarpit.schema.json is generated from CONFIG_SCHEMA (run `npm run schema` after changing it)', () => {
  assert.equal(readFileSync(SCHEMA_FILE, 'utf8'), schemaText());
});
