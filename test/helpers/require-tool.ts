/**
 * Gate for integration tests that need a real server binary (postfix, redis-server, swaks…).
 *
 * Contract: locally a missing tool skips the test with a visible reason and an install hint; in CI
 * (`CI=true`) a missing tool fails the test, so a broken CI image cannot turn the suite green by skipping.
 */
import { accessSync, constants, statSync } from 'node:fs';
import path from 'node:path';
import type { test } from 'node:test';

/**
 * node:test's `TestContext`, derived from `test()`'s last overload (`test(fn?: TestFn)`) because
 * @types/node 20.9 declares the class without exporting it.
 */
export type TestContext = Parameters<NonNullable<Parameters<typeof test>[0]>>[0];

/** True when running under CI (`CI=true`), where missing tools are failures, not skips. */
export const inCI: boolean = process.env.CI === 'true';

/** Debian package that provides each tool, for the skip message. */
const INSTALL_HINT: Readonly<Record<string, string>> = {
  postfix: 'postfix',
  postconf: 'postfix',
  'smtp-source': 'postfix',
  'smtp-sink': 'postfix',
  swaks: 'swaks',
  'redis-server': 'redis-server',
  'systemd-analyze': 'systemd',
  'systemd-sysusers': 'systemd',
  promtool: 'prometheus',
  dnsmasq: 'dnsmasq',
  unbound: 'unbound',
};

/**
 * Directories searched after PATH: Debian keeps postfix in /usr/sbin, which is not on a normal
 * user's PATH.
 */
const SBIN_FALLBACK = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

/** Absolute path of an executable named `tool` on PATH (then the sbin folders), or undefined. */
export function findTool(tool: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter((d) => d !== ''), ...SBIN_FALLBACK];
  for (const dir of dirs) {
    const candidate = path.join(dir, tool);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/**
 * Returns true when `tool` is installed. Otherwise skips the test (returns false) or, in CI, throws.
 *
 * @example
 * test('relays through postfix', async (t) => {
 *   if (!requireTool(t, 'postfix')) return;
 *   …
 * });
 */
export function requireTool(t: TestContext, tool: string): boolean {
  if (findTool(tool) !== undefined) return true;
  const reason = `${tool} not installed: apt-get install ${INSTALL_HINT[tool] ?? tool}`;
  if (inCI) {
    throw new Error(`${reason} (missing in CI: .ci/run should have installed it)`);
  }
  t.skip(reason);
  return false;
}
