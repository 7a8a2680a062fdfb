import { formatLocated, type Located } from './yaml-schema.js';

/** A configuration mistake, located so an admin can go straight to it. */
export class ConfigError extends Error implements Located {
  override readonly name = 'ConfigError';
  readonly code = 'TARPIT_ERR_CONFIG';
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly column: number | undefined,
    readonly key: string,
    readonly reason: string,
  ) {
    super(formatLocated({ file, line, column, key, reason }));
  }
}

/** Several mistakes found in one pass; `check` prints them all. */
export class ConfigErrors extends Error {
  override readonly name = 'ConfigErrors';
  readonly code = 'TARPIT_ERR_CONFIG';
  constructor(readonly errors: readonly ConfigError[]) {
    super(errors.map((e) => e.message).join('\n'));
  }
}
