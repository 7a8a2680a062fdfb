/**
 * `smtp-tarpit init [--dir DIR]`: copies the packaged configuration and policy
 * files into DIR (/etc/smtp-tarpit by default) as the admin's starting point.
 * It never overwrites a file, so running it again after an upgrade adds only
 * the files that are new and leaves the admin's edits alone.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEFAULT_INIT_DIR = '/etc/smtp-tarpit';

export interface InitArgs {
  readonly dir: string;
}

/**
 * The package's own root, found from this module so it works from a global
 * install as well as from a clone (src/cli/ under tsx, dist/cli/ built).
 */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The shipped file keeps the clone's layout (config/ beside policies/); the copy sits above its policies/. */
const SHIPPED_POLICIES = /^policies: \.\.\/policies(?=\s|$)/m;

interface Template {
  readonly from: string;
  readonly to: string;
  readonly edit?: (text: string) => string;
}

export function runInit(args: InitArgs, root = PACKAGE_ROOT): number {
  const dir = resolve(args.dir);
  const templates: Template[] = [
    { from: join(root, 'config', 'smtp-tarpit.yaml'), to: join(dir, 'smtp-tarpit.yaml'), edit: localPolicies },
    { from: join(root, 'config', 'smtp-tarpit.schema.json'), to: join(dir, 'smtp-tarpit.schema.json') },
    ...filesUnder(join(root, 'policies')).map((rel) => ({ from: join(root, 'policies', rel), to: join(dir, 'policies', rel) })),
  ];
  let failed = false;
  let wrote = 0;
  for (const t of templates) {
    let writing = false;
    try {
      const text = readFileSync(t.from, 'utf8');
      // mkdir says EEXIST for a plain file in the way too: only the write's EEXIST means "already there".
      mkdirSync(dirname(t.to), { recursive: true });
      writing = true;
      // 'wx' fails on an existing file in the same call that creates it, so an admin's file is never replaced.
      writeFileSync(t.to, t.edit ? t.edit(text) : text, { flag: 'wx' });
      console.log(`wrote ${t.to}`);
      wrote++;
    } catch (err) {
      if (writing && (err as NodeJS.ErrnoException).code === 'EEXIST') {
        console.log(`skipped ${t.to}: it exists, left as it is`);
        continue;
      }
      console.error(`cannot write ${t.to}: ${(err as Error).message}`);
      failed = true;
    }
  }
  if (wrote > 0 && !failed) {
    console.log(`next: edit ${join(dir, 'smtp-tarpit.yaml')} and the files in ${join(dir, 'policies')}, then run smtp-tarpit check --config ${join(dir, 'smtp-tarpit.yaml')}`);
  }
  return failed ? 1 : 0;
}

function localPolicies(text: string): string {
  if (!SHIPPED_POLICIES.test(text)) throw new Error('the packaged configuration has no "policies: ../policies" line to point at the copied policies/ (a packaging mistake)');
  return text.replace(SHIPPED_POLICIES, 'policies: policies');
}

/** Paths of the files under `dir`, relative to it, in a stable order. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .sort((a, b) => a.name.localeCompare(b.name))
    .flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)).map((f) => join(e.name, f)) : e.isFile() ? [e.name] : []));
}
