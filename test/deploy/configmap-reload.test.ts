/**
 * A Kubernetes ConfigMap volume updates by an atomic symlink swap: the files
 * are symlinks through `..data`, which the kubelet points at a new timestamped
 * directory by renaming `..data_tmp` over it. deploy/kubernetes relies on the
 * policy store's directory watch seeing that swap; this builds the same layout
 * on disk, swaps it the kubelet's way, and checks the new policy is in force
 * with no SIGHUP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { defaultConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/metrics/logger.js';
import { PolicyStore } from '../../src/policy/policy-store.js';
import { createPolicyState, localIdentity } from '../../src/policy/state.js';

const SHIPPED = fileURLToPath(new URL('../../policies/', import.meta.url));
const FILES = ['policy.yaml', 'allow.cidr', 'block.cidr', 'known-senders.cidr'];

/** Writes one ConfigMap generation: `<dir>/..<stamp>/<files>`. */
function generation(dir: string, stamp: string, files: Record<string, string>): string {
  const gen = `..${stamp}`;
  mkdirSync(join(dir, gen));
  for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, gen, name), body);
  return gen;
}

async function until(what: string, ok: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test('a ConfigMap-style ..data symlink swap reloads the policy without a signal', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-configmap-'));
  const files = Object.fromEntries(FILES.map((f) => [f, readFileSync(join(SHIPPED, f), 'utf8')]));
  const first = generation(dir, '2026_11_23_10_00_00.000000001', files);
  symlinkSync(first, join(dir, '..data'));
  for (const f of FILES) symlinkSync(join('..data', f), join(dir, f));

  const lines: string[] = [];
  const logger = createLogger('info', new Writable({ write: (chunk: Buffer, _e, done) => (lines.push(chunk.toString()), done()) }));
  const config = defaultConfig({ policies: dir });
  const store = new PolicyStore(dir, createPolicyState(config), localIdentity(config), logger);
  try {
    const before = store.current.policy.thresholds.tarpit;
    store.watch();
    // Let the watch settle in before the swap, as a running pod's would be.
    await new Promise((r) => setTimeout(r, 50));

    const changed = files['policy.yaml']!.replace(/^(\s+tarpit:\s*)\d+/m, `$1${before + 1}`);
    assert.notEqual(changed, files['policy.yaml'], 'the edit must change verdicts.tarpit');
    const second = generation(dir, '2026_11_23_10_05_00.000000002', { ...files, 'policy.yaml': changed });
    // The kubelet's atomic writer: new symlink beside, renamed over ..data, old generation removed.
    symlinkSync(second, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    rmSync(join(dir, first), { recursive: true });

    await until('the swapped policy to be in force', () => store.current.policy.thresholds.tarpit === before + 1);
    assert.ok(lines.some((l) => l.includes('"trigger":"watch"') && l.includes('policy reloaded')), 'reload not logged as from the watch');
  } finally {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
