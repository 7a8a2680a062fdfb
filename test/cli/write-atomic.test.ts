/**
 * writeFileAtomic: the file is replaced by rename (a reader never sees half of
 * it), keeps its mode, owner and group, and a failed replace leaves the old
 * file and no temporary file behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../../src/cli/write-atomic.js';
import type { TestContext } from '../helpers/require-tool.js';

function dir(t: TestContext): string {
  const d = mkdtempSync(join(tmpdir(), 'tarpit-atomic-'));
  t.after(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('a new file is written whole, with the mode an editor would give it', (t) => {
  const d = dir(t);
  const file = join(d, 'list.cidr');
  writeFileAtomic(file, '192.0.2.0/24\n');
  assert.equal(readFileSync(file, 'utf8'), '192.0.2.0/24\n');
  const umask = process.umask();
  assert.equal(statSync(file).mode & 0o777, 0o644 & ~umask);
  assert.deepEqual(readdirSync(d), ['list.cidr']);
});

test('an existing file is replaced by a new inode and keeps its mode, owner and group', (t) => {
  const d = dir(t);
  const file = join(d, 'list.cidr');
  writeFileSync(file, 'old\n');
  chmodSync(file, 0o640);
  // As root, give it to another owner (nobody), as root:smtp-tarpit is to root: the new file must get the same.
  const root = process.getuid?.() === 0;
  if (root) chownSync(file, 65534, 65534);
  const before = statSync(file);
  writeFileAtomic(file, 'new\n');
  const after = statSync(file);
  assert.notEqual(after.ino, before.ino);
  assert.equal(readFileSync(file, 'utf8'), 'new\n');
  assert.equal(after.mode & 0o7777, 0o640);
  assert.deepEqual([after.uid, after.gid], [before.uid, before.gid]);
  assert.deepEqual(readdirSync(d), ['list.cidr']);
});

test('a replace that fails leaves the old content and no temporary file', (t) => {
  const d = dir(t);
  const target = join(d, 'taken');
  mkdirSync(target);
  writeFileSync(join(target, 'inside'), 'x');
  assert.throws(() => writeFileAtomic(target, 'new\n'), (err: NodeJS.ErrnoException) => err.code === 'EISDIR' || err.code === 'ENOTEMPTY' || err.code === 'EEXIST');
  assert.deepEqual(readdirSync(d), ['taken']);
  assert.deepEqual(readdirSync(target), ['inside']);
  assert.throws(() => writeFileAtomic(join(d, 'no', 'such', 'dir.cidr'), 'x'), { code: 'ENOENT' });
});
