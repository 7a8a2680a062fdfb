/**
 * The engine as it ships: src compiled by tsc (tsconfig.build.json) into a
 * temp dir, so an in-process bench measures the JavaScript `serve` runs, not
 * tsx's on-the-fly transform (which wraps every inline function in a `__name`
 * call, a few per cent of a vet), and a bench that runs the CLI runs what
 * ships without rebuilding the project's dist/ under anyone else's feet. The
 * temp dir gets a copy of the project's package.json (`"type": "module"`, the
 * version the CLI reports) and a link to its node_modules, so the compiled
 * files import exactly what dist/ would.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface Build {
  /** The temp dir; `dist/` inside it mirrors `src/`, so `dist/cli/main.js` is the CLI. */
  readonly dir: string;
  /** tsc's complaints, when it reported any (it still emits). */
  readonly problems: string;
  /** Imports `dist/<path>` (a path under src/, ending in .js), typed as the caller says. */
  load<T>(path: string): Promise<T>;
  remove(): void;
}

export function buildDist(root: string): Build {
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-build-'));
  copyFileSync(join(root, 'package.json'), join(dir, 'package.json'));
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', join(dir, 'dist'), '--sourceMap', 'false'], {
    encoding: 'utf8',
  });
  const problems = tsc.status === 0 ? '' : `${tsc.stdout}${tsc.stderr}`.trim() || `tsc exited ${String(tsc.status)}`;
  return {
    dir,
    problems,
    async load<T>(path: string): Promise<T> {
      const file = join(dir, 'dist', path);
      if (!existsSync(file)) throw new Error(`tsc emitted no ${file}:\n${problems}`);
      return (await import(pathToFileURL(file).href)) as T;
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
