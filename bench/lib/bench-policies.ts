/**
 * The policy the relay benches run: the shipped one, changed only where the
 * bench's clients would otherwise not be relayed at all: first contact off
 * (every bench client would be held and told to retry), rDNS weights 0 (no
 * DNS server here; lookups would time out), and rate limits raised (every
 * bench client is 127.0.0.1). Each session still runs the list, rate and HELO
 * checks before it is relayed.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Writes the bench policy into `<dir>/policies` and returns that directory. */
export function benchPolicies(dir: string): string {
  const out = join(dir, 'policies');
  mkdirSync(out, { recursive: true });
  for (const f of ['allow.cidr', 'block.cidr', 'known-senders.cidr']) copyFileSync(join(ROOT, 'policies', f), join(out, f));
  const policy = parse(readFileSync(join(ROOT, 'policies', 'policy.yaml'), 'utf8')) as Record<string, Record<string, unknown>>;
  policy.firstContact = { ...policy.firstContact, enabled: false };
  policy.rdns = { missing: 0, unconfirmed: 0 };
  policy.rate = { ...policy.rate, maxConcurrent: 100000, maxPerMinute: 10000000 };
  writeFileSync(join(out, 'policy.yaml'), stringify(policy));
  return out;
}
