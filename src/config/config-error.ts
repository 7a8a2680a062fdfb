import { LocatedError, LocatedErrors } from './yaml-schema.js';

/** A configuration mistake, located so an admin can go straight to it. */
export class ConfigError extends LocatedError {
  override readonly name = 'ConfigError';
  readonly code = 'TARPIT_ERR_CONFIG';
}

/** Several mistakes found in one pass; `check` prints them all. */
export class ConfigErrors extends LocatedErrors<ConfigError> {
  override readonly name = 'ConfigErrors';
  readonly code = 'TARPIT_ERR_CONFIG';
}
