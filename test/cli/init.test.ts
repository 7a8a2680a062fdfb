/**
 * `smtp-tarpit init` from the clone: the packaged configuration and policies
 * land in the directory, the copy's `policies` points beside it so a check run
 * from anywhere finds them, and a file already there is never replaced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/** Absolute, so the CLI runs the same from `/`. */
const CLI = ['--import', import.meta.resolve('tsx'), resolve('src/cli/main.ts')];

function run(cwd: string, ...args: string[]) {
  return spawnSync(process.execPath, [...CLI, ...args], { cwd, encoding: 'utf8' });
}

test('init writes the configuration and every policy file, and check from / passes with the policies beside the configuration', (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'tarpit-init-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  const etc = join(tmp, 'etc', 'smtp-tarpit');
  const r = run(process.cwd(), 'init', '--dir', etc);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  const policies = readdirSync('policies').sort((a, b) => a.localeCompare(b));
  assert.deepEqual(
    r.stdout.trim().split('\n'),
    [
      `wrote ${join(etc, 'smtp-tarpit.yaml')}`,
      `wrote ${join(etc, 'smtp-tarpit.schema.json')}`,
      ...policies.map((f) => `wrote ${join(etc, 'policies', f)}`),
      `next: edit ${join(etc, 'smtp-tarpit.yaml')} and the files in ${join(etc, 'policies')}, then run smtp-tarpit check --config ${join(etc, 'smtp-tarpit.yaml')}`,
    ],
  );
  for (const f of policies) assert.equal(readFileSync(join(etc, 'policies', f), 'utf8'), readFileSync(join('policies', f), 'utf8'), f);
  assert.equal(readFileSync(join(etc, 'smtp-tarpit.schema.json'), 'utf8'), readFileSync('config/smtp-tarpit.schema.json', 'utf8'));
  const shipped = readFileSync('config/smtp-tarpit.yaml', 'utf8');
  assert.equal(readFileSync(join(etc, 'smtp-tarpit.yaml'), 'utf8'), shipped.replace(/^policies: \.\.\/policies/m, 'policies: policies'), 'only the policies line differs');

  const check = run('/', 'check', '--config', join(etc, 'smtp-tarpit.yaml'));
  assert.equal(check.status, 0, check.stderr);
  assert.match(check.stdout, new RegExp(`^${join(etc, 'policies', 'policy.yaml')}: ok`, 'm'));
});

test('init never overwrites: an edited file stays, a missing one is added, and the output says which', (t) => {
  const etc = mkdtempSync(join(tmpdir(), 'tarpit-init-again-'));
  t.after(() => rmSync(etc, { recursive: true, force: true }));
  mkdirSync(join(etc, 'policies'));
  writeFileSync(join(etc, 'smtp-tarpit.yaml'), 'listen: "127.0.0.1:2525"\n');
  writeFileSync(join(etc, 'policies', 'allow.cidr'), '192.0.2.0/24\n');
  const r = run(process.cwd(), 'init', '--dir', etc);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^skipped ${join(etc, 'smtp-tarpit.yaml')}: it exists, left as it is$`, 'm'));
  assert.match(r.stdout, new RegExp(`^skipped ${join(etc, 'policies', 'allow.cidr')}: it exists, left as it is$`, 'm'));
  assert.match(r.stdout, new RegExp(`^wrote ${join(etc, 'policies', 'policy.yaml')}$`, 'm'));
  assert.equal(readFileSync(join(etc, 'smtp-tarpit.yaml'), 'utf8'), 'listen: "127.0.0.1:2525"\n');
  assert.equal(readFileSync(join(etc, 'policies', 'allow.cidr'), 'utf8'), '192.0.2.0/24\n');
});

test('init reports a directory it cannot write, exit 1', (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'tarpit-init-file-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));
  // A plain file where the directory should be fails for root too, unlike a permission.
  writeFileSync(join(tmp, 'etc'), '');
  const r = run(process.cwd(), 'init', '--dir', join(tmp, 'etc'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, new RegExp(`^cannot write ${join(tmp, 'etc', 'smtp-tarpit.yaml')}: `, 'm'));
  assert.doesNotMatch(r.stdout, /^next:/m);
});
