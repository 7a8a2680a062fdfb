/**
 * Replaces a file so that a reader sees the old content or the new one,
 * never a half-written file: the proxy reloads its policy when a file in the
 * policy directory changes, and could otherwise read a list mid-write. The
 * text goes to a temporary file in the same directory (rename(2) is atomic
 * only within one file system), is flushed to disk, and is renamed over the
 * target.
 *
 * A file that was there keeps its permission bits, owner and group: a list
 * made readable for the proxy's group (root:smtp-tarpit 0640, deploy/README.md)
 * must stay readable when root replaces it. When the owner cannot be kept
 * (not root, or no CAP_CHOWN), nothing is replaced: a file the proxy could not
 * read would fail its next policy reload.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fchmodSync, fchownSync, fstatSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Mode of a new file, before the umask: what an editor's save would give. */
const NEW_FILE_MODE = 0o644;

export function writeFileAtomic(file: string, text: string): void {
  const old = existing(file);
  // A dot file: `ls` and globs such as *.cidr pass it over while it exists.
  const temporary = join(dirname(file), `.${basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(temporary, 'wx', old === undefined ? NEW_FILE_MODE : old.mode & 0o7777);
  try {
    try {
      if (old !== undefined) keepOwnerAndMode(fd, old);
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temporary, file);
  } catch (err) {
    rmSync(temporary, { force: true });
    throw err;
  }
}

function keepOwnerAndMode(fd: number, old: Stats): void {
  const now = fstatSync(fd);
  if (now.uid !== old.uid || now.gid !== old.gid) fchownSync(fd, old.uid, old.gid);
  // After the chown (which may clear set-id bits), and because open's mode went through the umask.
  fchmodSync(fd, old.mode & 0o7777);
}

function existing(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}
