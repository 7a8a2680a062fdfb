/**
 * The system install as an admin does it (issue 13): `npm pack` from a clone
 * with no dist/ yet (prepack builds), `npm install -g` of the tarball into a
 * scratch prefix, `smtp-tarpit init`, then `smtp-tarpit check` from `/`, so
 * nothing is found through the clone or the current directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import { inCI, requireTool } from '../helpers/require-tool.js';

const REPO = resolve('.');
/** What a clean clone lacks: built output, installed modules, local scratch. */
const NOT_IN_A_CLONE = new Set(['node_modules', 'dist', '.git', 'coverage', '.tmp']);
/** The installed command's shebang finds node on PATH: the node running the tests. */
const PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ''}`;
const NETWORK_FAILURE = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|network/i;

function sh(cmd: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, PATH }, timeout: 240_000 });
}

function out(r: SpawnSyncReturns<string>): string {
  return `exit ${String(r.status)}\n${r.stdout}\n${r.stderr}`;
}

test('npm pack, npm install -g of the tarball, smtp-tarpit init, then check from / passes; a second init skips every file', { timeout: 280_000 }, (t) => {
  if (!requireTool(t, 'npm')) return;
  const tmp = mkdtempSync(join(tmpdir(), 'tarpit-install-'));
  t.after(() => rmSync(tmp, { recursive: true, force: true }));

  // A clean clone: the sources without dist/, so the tarball holds only what prepack built.
  const clone = join(tmp, 'clone');
  cpSync(REPO, clone, { recursive: true, filter: (src) => src === REPO || !NOT_IN_A_CLONE.has(basename(src)) || dirname(src) !== REPO });
  symlinkSync(join(REPO, 'node_modules'), join(clone, 'node_modules'));
  const packs = join(tmp, 'packs');
  mkdirSync(packs);
  const pack = sh('npm', ['pack', '--json', '--pack-destination', packs], clone);
  assert.equal(pack.status, 0, out(pack));
  const tarballs = readdirSync(packs).filter((f) => f.endsWith('.tgz'));
  assert.equal(tarballs.length, 1, out(pack));
  const tarball = join(packs, tarballs[0] as string);

  // npm pack --json prints the list of files after whatever the prepack build printed.
  const listed = (JSON.parse(pack.stdout.slice(pack.stdout.indexOf('[\n'))) as { files: { path: string }[] }[])[0]?.files.map((f) => f.path) ?? [];
  for (const f of ['dist/cli/main.js', 'dist/cli/init.js', 'config/smtp-tarpit.yaml', 'config/smtp-tarpit.schema.json', 'policies/policy.yaml', 'package.json']) {
    assert.ok(listed.includes(f), `${f} is in the tarball`);
  }
  const stray = listed.filter((f) => /^(src|test|bench|scripts|docs|deploy|\.ci)\/|^tsconfig|^eslint/.test(f));
  assert.deepEqual(stray, [], 'no sources, tests or tooling in the tarball');

  const prefix = join(tmp, 'prefix');
  const install = sh('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], tmp);
  if (install.status !== 0 && !inCI && NETWORK_FAILURE.test(install.stderr)) {
    t.skip(`npm install could not reach the registry (dependencies not in the npm cache; run npm ci first): ${install.stderr.trim().split('\n').at(-1) ?? ''}`);
    return;
  }
  assert.equal(install.status, 0, out(install));
  const bin = join(prefix, 'bin', 'smtp-tarpit');
  const main = realpathSync(bin);
  assert.ok(main.endsWith(join('smtp-tarpit', 'dist', 'cli', 'main.js')), main);
  assert.ok((statSync(main).mode & 0o111) !== 0, 'the command is executable');
  assert.match(readFileSync(main, 'utf8'), /^#!\/usr\/bin\/env node\n/);

  const etc = join(tmp, 'etc');
  const init = sh(bin, ['init', '--dir', etc], '/');
  assert.equal(init.status, 0, out(init));
  for (const f of ['smtp-tarpit.yaml', 'smtp-tarpit.schema.json', 'policies/policy.yaml', 'policies/allow.cidr', 'policies/block.cidr', 'policies/known-senders.cidr']) {
    assert.match(init.stdout, new RegExp(`^wrote ${join(etc, f)}$`, 'm'));
  }

  const config = join(etc, 'smtp-tarpit.yaml');
  const check = sh(bin, ['check', '--config', config], '/');
  assert.equal(check.status, 0, out(check));
  assert.equal(check.stderr, '');
  assert.match(check.stdout, new RegExp(`^${config}: ok`, 'm'));
  assert.match(check.stdout, new RegExp(`^${join(etc, 'policies', 'policy.yaml')}: ok`, 'm'), 'the policies beside the configuration, not the package\'s');

  const again = sh(bin, ['init', '--dir', etc], '/');
  assert.equal(again.status, 0, out(again));
  assert.doesNotMatch(again.stdout, /^wrote /m);
  assert.match(again.stdout, new RegExp(`^skipped ${config}: it exists, left as it is$`, 'm'));
  assert.match(again.stdout, new RegExp(`^skipped ${join(etc, 'policies', 'policy.yaml')}: it exists, left as it is$`, 'm'));
});
