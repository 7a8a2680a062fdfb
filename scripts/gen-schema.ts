// Writes config/smtp-tarpit.schema.json from CONFIG_SCHEMA and
// policies/policy.schema.json from POLICY_SCHEMA, for editors
// (yaml-language-server). test/config/schema.test.ts and
// test/policy/schema.test.ts fail when they drift.
import { writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA } from '../src/config/schema.js';
import { POLICY_SCHEMA } from '../src/policy/schema.js';

export const SCHEMA_FILE = new URL('../config/smtp-tarpit.schema.json', import.meta.url);
export const schemaText = (): string => JSON.stringify(CONFIG_SCHEMA, null, 2) + '\n';

export const POLICY_SCHEMA_FILE = new URL('../policies/policy.schema.json', import.meta.url);
export const policySchemaText = (): string => JSON.stringify(POLICY_SCHEMA, null, 2) + '\n';

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  writeFileSync(SCHEMA_FILE, schemaText());
  console.log(`wrote ${SCHEMA_FILE.pathname}`);
  writeFileSync(POLICY_SCHEMA_FILE, policySchemaText());
  console.log(`wrote ${POLICY_SCHEMA_FILE.pathname}`);
}
