/**
 * Policy mistakes, each located in policy.yaml or a list file it names, so
 * `check`, a failed reload's log line and an admin's editor agree on where to
 * look. A load reports every mistake it found at once.
 */
import { formatLocated, LocatedError, LocatedErrors, type Located } from '../config/yaml-schema.js';

/**
 * One mistake. `file` is policy.yaml or a list file; `line` is undefined only
 * when the file could not be read at all; `key` is the dotted key in
 * policy.yaml (`dnsbl.0.zone`), for a list file the key that names it (`lists.block`).
 */
export class PolicyError extends LocatedError {
  override readonly name = 'PolicyError';
  readonly code = 'TARPIT_ERR_POLICY';
}

/** Every mistake of one load; `message` has one `file:line:col: key: reason` line per mistake. */
export class PolicyErrors extends LocatedErrors<PolicyError> {
  override readonly name = 'PolicyErrors';
  readonly code = 'TARPIT_ERR_POLICY';
}

/** Accepted but probably not what the admin meant (a CIDR with host bits set, an unused profile). */
export interface PolicyWarning extends Located {
  /** `file:line:col: key: reason`. */
  readonly message: string;
}

export function policyWarning(l: Located): PolicyWarning {
  return Object.freeze({ file: l.file, line: l.line, column: l.column, key: l.key, reason: l.reason, message: formatLocated(l) });
}
