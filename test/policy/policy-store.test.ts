/**
 * Reload safety (issue 12, docs/design.md §4.7) over real policy directories:
 * an empty policy.yaml is refused like an invalid one, with the old lists
 * still in force; requests close together are one reload; a reload compiles
 * its lists off the event loop; old policies are not kept alive.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { defaultConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/metrics/logger.js';
import { ListWorkerError } from '../../src/policy/lists/compile-off-thread.js';
import { loadPolicyDir } from '../../src/policy/load.js';
import { policyReloadsTotal } from '../../src/policy/metrics.js';
import { PolicyStore, type PolicyStoreOptions, type ReloadTimer } from '../../src/policy/policy-store.js';
import type { Policy } from '../../src/policy/spec.js';
import { createPolicyState, localIdentity } from '../../src/policy/state.js';
import { listText, policyDir } from '../helpers/policy-dir.js';
import type { TestContext } from '../helpers/require-tool.js';

const BLOCKED = '192.0.2.66';

/** A timer that fires only when the test says so: debouncing is then a matter of order, not of the machine's speed. */
class ManualTimer implements ReloadTimer {
  private readonly armed = new Set<() => void>();
  set(fn: () => void): unknown {
    this.armed.add(fn);
    return fn;
  }
  clear(handle: unknown): void {
    this.armed.delete(handle as () => void);
  }
  get pending(): number {
    return this.armed.size;
  }
  fire(): void {
    const due = [...this.armed];
    this.armed.clear();
    for (const fn of due) fn();
  }
}

interface Harness {
  readonly dir: string;
  readonly store: PolicyStore;
  readonly logs: Array<Record<string, unknown>>;
}

function harness(t: TestContext, options: PolicyStoreOptions = {}, block: readonly string[] = [BLOCKED]): Harness {
  const dir = policyDir(t, { block });
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write: (chunk: Buffer, _e, done) => {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = defaultConfig({ policies: dir });
  const store = new PolicyStore(dir, createPolicyState(config), localIdentity(config), createLogger('info', sink), options);
  t.after(() => store.close());
  return { dir, store, logs };
}

async function reloads(result: 'ok' | 'error'): Promise<number> {
  return (await policyReloadsTotal.get()).values.find((v) => v.labels.result === result)?.value ?? 0;
}

function blocks(store: PolicyStore, address: string): boolean {
  return store.current.policy.lists.block.list.has(address);
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const [name, text] of [
  ['a 0-byte', ''],
  ['a whitespace-only', '  \n\t\n\n'],
  ['a comment-only', '# lists:\n#   block: block.cidr\n---\n'],
] as const) {
  test(`${name} policy.yaml is refused on reload, counted and logged at file:line; the old lists stay in force`, async (t) => {
    const timer = new ManualTimer();
    const { dir, store, logs } = harness(t, { timer });
    assert.equal(blocks(store, BLOCKED), true);
    writeFileSync(join(dir, 'policy.yaml'), text);
    // The list changes too, as a failed copy of the whole directory would leave it: nothing of it may apply.
    writeFileSync(join(dir, 'block.cidr'), listText([]));
    const errorsBefore = await reloads('error');

    const requested = store.requestReload('sighup');
    timer.fire();
    const result = await requested;
    assert.equal(result.ok, false);
    const expected = `${join(dir, 'policy.yaml')}:1:1: the file is empty`;
    if (!result.ok) assert.ok(result.errors.some((e) => e.startsWith(expected)), JSON.stringify(result.errors));
    assert.equal(await reloads('error'), errorsBefore + 1);
    const logged = logs.find((l) => l.msg === 'policy reload failed; the previous policy stays in force');
    assert.ok(logged && (logged.errors as string[]).some((e) => e.startsWith(expected)), JSON.stringify(logs));
    assert.equal(blocks(store, BLOCKED), true, 'the old block list is still in force');

    // The synchronous entry point refuses it the same way, and so does a start.
    assert.equal(store.reload('api').ok, false);
    assert.equal(await reloads('error'), errorsBefore + 2);
    assert.equal(blocks(store, BLOCKED), true);
    assert.throws(() => loadPolicyDir(dir), /the file is empty/);
  });
}

test('a save and a SIGHUP close together are one reload, counted once, logged with both triggers', async (t) => {
  const timer = new ManualTimer();
  const { dir, store, logs } = harness(t, { timer });
  store.watch();
  const okBefore = await reloads('ok');
  writeFileSync(join(dir, 'block.cidr'), listText([BLOCKED, '198.51.100.7']));
  // The watch has seen the save once it asks for a reload (the timer is armed); the reload itself waits for the timer.
  await until('the watch to ask for a reload', () => timer.pending > 0);
  const bySighup = store.requestReload('sighup');
  assert.equal(timer.pending, 1, 'the SIGHUP restarted the one quiet period rather than starting another');
  timer.fire();
  const result = await bySighup;
  assert.ok(result.ok, JSON.stringify(result));
  assert.equal(await reloads('ok'), okBefore + 1);
  assert.equal(blocks(store, '198.51.100.7'), true);
  const reloaded = logs.filter((l) => l.msg === 'policy reloaded');
  assert.equal(reloaded.length, 1);
  assert.equal(reloaded[0]?.trigger, 'watch+sighup');
});

test('a request while a reload runs is served by another reload after it, which reads the files again', async (t) => {
  const timer = new ManualTimer();
  const started: Array<(p: Policy) => void> = [];
  const { dir, store } = harness(t, {
    timer,
    load: (d) => new Promise<Policy>((resolve) => started.push(() => resolve(loadPolicyDir(d)))),
  });
  const first = store.requestReload('watch');
  timer.fire();
  assert.equal(started.length, 1);
  writeFileSync(join(dir, 'block.cidr'), listText(['203.0.113.9']));
  const second = store.requestReload('sighup');
  timer.fire();
  assert.equal(started.length, 1, 'the second waits for the first');
  started[0]!(undefined as unknown as Policy);
  assert.ok((await first).ok);
  await until('the second reload to start', () => started.length === 2);
  started[1]!(undefined as unknown as Policy);
  assert.ok((await second).ok);
  await store.settled();
  assert.equal(blocks(store, '203.0.113.9'), true);
  assert.equal(blocks(store, BLOCKED), false);
});

test('when the compile thread cannot run, the reload compiles on the main thread and says so', async (t) => {
  const timer = new ManualTimer();
  const { dir, store, logs } = harness(t, { timer, load: () => Promise.reject(new ListWorkerError('cannot start the list compiler: test')) });
  writeFileSync(join(dir, 'block.cidr'), listText(['203.0.113.10']));
  const result = store.requestReload('sighup');
  timer.fire();
  const r = await result;
  assert.ok(r.ok, JSON.stringify(r));
  assert.equal(blocks(store, '203.0.113.10'), true);
  assert.ok(logs.some((l) => l.level === 'warn' && String(l.msg).startsWith('list compiler thread failed')));
});

test('close() answers a waiting request without reloading', async (t) => {
  const timer = new ManualTimer();
  const { store } = harness(t, { timer });
  const okBefore = await reloads('ok');
  const waiting = store.requestReload('sighup');
  store.close();
  assert.equal((await waiting).ok, false);
  assert.equal(timer.pending, 0);
  assert.equal(await reloads('ok'), okBefore);
});

test('a 200,000-line block list reloads through the worker, both families answered from the new list', async (t) => {
  const timer = new ManualTimer();
  const { dir, store } = harness(t, { timer });
  const lines = Array.from({ length: 200_000 }, (_, i) => (i % 5 === 4 ? `2001:db8:${(i & 0xffff).toString(16)}::/48` : `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`));
  writeFileSync(join(dir, 'block.cidr'), listText(lines));
  const result = store.requestReload('sighup');
  timer.fire();
  assert.ok((await result).ok);
  assert.equal(store.current.policy.lists.block.list.size, 200_000);
  for (const [address, listed] of [
    ['10.0.0.0', true],
    ['10.2.255.254', true],
    ['10.3.13.3', false],
    ['2001:db8:4::1', true],
    ['2001:db8:5::1', false],
    [BLOCKED, false],
  ] as const) {
    assert.equal(blocks(store, address), listed, address);
  }
});

test('reloaded policies are not kept alive: after ten reloads the first engine can be collected', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const timer = new ManualTimer();
  const { store } = harness(t, { timer });
  const first = new WeakRef(store.current);
  for (let i = 0; i < 10; i++) {
    const result = store.requestReload('watch');
    timer.fire();
    assert.ok((await result).ok);
  }
  // A WeakRef's target lives until the job that read it ends.
  await new Promise((r) => setImmediate(r));
  gc();
  assert.equal(first.deref(), undefined, 'the first engine is still referenced from somewhere');
});
