/**
 * Policy mistakes, each located in policy.yaml or a list file it names, so
 * `check`, a failed reload's log line and an admin's editor agree on where to
 * look. A load reports every mistake it found at once.
 */
import { formatLocated, type Located } from '../config/yaml-schema.js';

export class PolicyError extends Error implements Located {
  override readonly name = 'PolicyError';
  readonly code = 'TARPIT_ERR_POLICY';
  constructor(
    readonly file: string,
    /** Undefined only when the file could not be read at all. */
    readonly line: number | undefined,
    readonly column: number | undefined,
    /** Dotted key in policy.yaml (`dnsbl.0.zone`); for a list file, the key that names it (`lists.block`). */
    readonly key: string,
    readonly reason: string,
  ) {
    super(formatLocated({ file, line, column, key, reason }));
  }

  static from(l: Located): PolicyError {
    return new PolicyError(l.file, l.line, l.column, l.key, l.reason);
  }
}

/** Every mistake of one load; `message` has one `file:line:col: key: reason` line per mistake. */
export class PolicyErrors extends Error {
  override readonly name = 'PolicyErrors';
  readonly code = 'TARPIT_ERR_POLICY';
  constructor(readonly errors: readonly PolicyError[]) {
    super(errors.map((e) => e.message).join('\n'));
  }
}

/** Accepted but probably not what the admin meant (a CIDR with host bits set, an unused profile). */
export interface PolicyWarning extends Located {
  /** `file:line:col: key: reason`. */
  readonly message: string;
}

export function policyWarning(l: Located): PolicyWarning {
  return Object.freeze({ file: l.file, line: l.line, column: l.column, key: l.key, reason: l.reason, message: formatLocated(l) });
}
