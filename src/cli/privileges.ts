/**
 * Privilege drop: port 25 needs root (or CAP_NET_BIND_SERVICE) to bind, and
 * nothing else does. Started as root, we bind, then become `user`/`group`
 * before any SMTP client is served (with workers, the primary's metrics
 * listener answers as root until every first worker listens, then the
 * primary drops too); and we refuse to stay root on a public address unless
 * the configuration says so (`allowRoot`).
 */
import { accessSync, constants, readdirSync } from 'node:fs';
import { isIP } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../config/schema.js';
import type { Logger } from '../metrics/logger.js';

function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** 127.0.0.0/8, ::1 (also as ::ffff:127.x) and localhost: only this machine can connect. */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || h.startsWith('::ffff:127.');
  return false;
}

/**
 * Why this process must not run, or undefined: it is root (or will stay root,
 * having no user to become), listens on a public address, and allowRoot is off.
 * `afterDrop` words it for a process that should already have switched.
 */
export function rootRefusal(config: Config, afterDrop: boolean): string | undefined {
  if (!isRoot() || config.allowRoot || isLoopback(config.listen.host)) return undefined;
  if (!afterDrop && config.user !== undefined) return undefined;
  const where = `${config.listen.host}:${config.listen.port}`;
  return (
    `refusing to run as root on a public address (${where}): ` +
    (afterDrop ? 'still uid 0 after the privilege drop' : 'set user and group to switch to once the port is bound') +
    ', or run unprivileged with CAP_NET_BIND_SERVICE, or set allowRoot: true'
  );
}

/** A numeric id stays a number: process.setuid('65534') would look up a user named "65534". */
function id(value: string): string | number {
  return /^\d+$/.test(value) ? Number(value) : value;
}

function isCurrentUser(user: string): boolean {
  const wanted = id(user);
  if (typeof wanted === 'number') return process.getuid?.() === wanted;
  try {
    return userInfo().username === wanted;
  } catch {
    return false;
  }
}

/**
 * Becomes config.user/config.group when root; throws when the switch fails
 * (unknown user or group). Supplementary groups first, then the group, then
 * the user: once the uid is not 0, the process may no longer change groups.
 *
 * Callers call this synchronously in the continuation of the listen callback:
 * from 'listening' to here only process.nextTick and promise jobs run, never
 * the event loop's poll phase that delivers accepted sockets, so no client is
 * served while we are root (a socket the kernel queued meanwhile is handed to
 * JavaScript only after the switch).
 */
export function dropPrivileges(config: Config, logger: Logger): void {
  const { user, group } = config;
  if (user === undefined || group === undefined || process.setuid === undefined) return;
  if (!isRoot()) {
    if (!isCurrentUser(user)) logger.info({ user, group, uid: process.getuid?.() }, 'user and group ignored: the process was not started as root');
    return;
  }
  // Node 20 has process.initgroups; @types/node 20 does not declare it.
  const { initgroups } = process as { initgroups?: (user: string | number, extraGroup: string | number) => void };
  initgroups?.call(process, id(user), id(group));
  process.setgid?.(id(group));
  process.setuid(id(user));
  logger.info({ user, group, uid: process.getuid?.(), gid: process.getgid?.() }, 'switched from root to the configured user and group');
}

/**
 * Files a SIGHUP reload reads (the configuration, the policy directory and its
 * files) that this process cannot read: after a privilege drop a root-only file
 * would make every reload fail, so say it at start.
 */
export function unreadablePaths(config: Config): string[] {
  const missing: string[] = [];
  const check = (path: string, mode: number): boolean => {
    try {
      accessSync(path, mode);
      return true;
    } catch {
      missing.push(path);
      return false;
    }
  };
  if (config.source !== '(defaults)') check(config.source, constants.R_OK);
  if (check(config.policies, constants.R_OK | constants.X_OK)) {
    for (const entry of readdirSync(config.policies, { withFileTypes: true })) {
      if (entry.isFile()) check(join(config.policies, entry.name), constants.R_OK);
    }
  }
  return missing;
}
