// Writes config/smtp-tarpit.schema.json from CONFIG_SCHEMA, for editors
// (yaml-language-server). test/config/schema.test.ts fails when it drifts.
import { writeFileSync } from 'node:fs';
import { CONFIG_SCHEMA } from '../src/config/schema.js';

export const SCHEMA_FILE = new URL('../config/smtp-tarpit.schema.json', import.meta.url);
export const schemaText = (): string => JSON.stringify(CONFIG_SCHEMA, null, 2) + '\n';

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  writeFileSync(SCHEMA_FILE, schemaText());
  console.log(`wrote ${SCHEMA_FILE.pathname}`);
}
