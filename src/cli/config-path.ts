/**
 * Where a command finds its configuration when `--config` is not given: the
 * clone's layout first (`npm start` from a clone), then where `smtp-tarpit
 * init` and the systemd unit put it on a server. Naming the file that was
 * chosen matters: a stale ./config in the current directory would otherwise
 * silently win over /etc.
 */
import { existsSync } from 'node:fs';

export const CONFIG_CANDIDATES: readonly string[] = ['config/smtp-tarpit.yaml', '/etc/smtp-tarpit/smtp-tarpit.yaml'];

export type Located =
  | { readonly file: string; readonly note?: string | undefined }
  | { readonly file?: undefined; readonly error: string };

/** `--config` as given, else the first of `candidates` that exists, with a note saying so, else an error naming them all. */
export function locateConfig(given: string | undefined, candidates: readonly string[] = CONFIG_CANDIDATES, exists: (path: string) => boolean = existsSync): Located {
  if (given !== undefined) return { file: given };
  const shown = candidates.map((c) => (c.startsWith('/') ? c : `./${c}`));
  const i = candidates.findIndex((c) => exists(c));
  if (i < 0) return { error: `no configuration file: neither ${shown.join(' nor ')} exists; name one with --config FILE, or write one with smtp-tarpit init` };
  const skipped = shown.slice(0, i);
  return { file: candidates[i] as string, note: `using ${shown[i] as string} (no --config given${skipped.length > 0 ? `; ${skipped.join(', ')} not found` : ''})` };
}
