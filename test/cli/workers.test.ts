import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseExposition, type MetricFamily } from '../helpers/prometheus-text.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { freePort, startServe, writeConfig, type ServeProcess } from './serve-process.js';

interface WorkerDetail {
  worker: number;
  pid: number;
  state: string;
  ready: boolean;
}

interface ReadyBody {
  ready: boolean;
  reason?: string;
  workers: WorkerDetail[];
}

async function readyz(metricsPort: number): Promise<{ status: number; body: ReadyBody }> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/readyz`);
  return { status: res.status, body: (await res.json()) as ReadyBody };
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The one unlabelled (or summed over labels) value of a family, from the real parser's output. */
function total(family: MetricFamily | undefined, labels: Readonly<Record<string, string>> = {}): number {
  assert.ok(family, 'family exported');
  let sum = 0;
  for (const m of family.metrics) {
    const l = (m.labels ?? {}) as Record<string, string>;
    if (Object.entries(labels).every(([k, v]) => l[k] === v)) sum += Number(m.value);
  }
  return sum;
}

/** One whole session from `source`; resolves with the final DATA reply code, or undefined when it broke off. */
async function session(port: number, source: string, id: string): Promise<number | undefined> {
  try {
    const client = await SmtpClient.open({ port, localAddress: source, timeout: 5000 });
    await client.command('EHLO client.example');
    const r = await client.send('a@sender.example', ['b@dest.example'], wireBody(`Subject: ${id}\n\n${id}\n`));
    await client.quit();
    return r.end?.code;
  } catch {
    return undefined;
  }
}

test('--workers 2: both workers serve, /metrics sums them, a killed worker is replaced, no relayed message is lost', { timeout: 90_000 }, async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const port = await freePort();
  const metricsPort = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, backend: { address: `127.0.0.1:${backend.port}`, warm: 2, poolSize: 10, maxPerGroup: 10 }, metrics: { listen: `127.0.0.1:${metricsPort}` } });
  const serve: ServeProcess = startServe(config, ['--workers', '2']);
  t.after(() => serve.kill('SIGKILL'));

  const first = await until('two ready workers', async () => {
    const r = await readyz(metricsPort).catch(() => undefined);
    return r?.status === 200 && r.body.workers.filter((w) => w.ready).length === 2 ? r.body : undefined;
  });
  assert.deepEqual(first.workers.map((w) => w.worker).sort(), [1, 2]);

  // 40 sessions, 8 at a time, from 40 source addresses: the kernel hands each to whichever worker accepts first.
  const accepted = new Set<string>();
  const sourceOf = new Map<string, string>();
  let sent = 0;
  const batch = async (n: number, tag: string): Promise<void> => {
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const id = `${tag}-${i}`;
        sent++;
        const source = `127.10.${Math.floor(sent / 200)}.${(sent % 200) + 1}`;
        sourceOf.set(id, source);
        return session(port, source, id).then((code) => ({ id, code }));
      }),
    );
    for (const { id, code } of results) if (code === 250) accepted.add(id);
  };
  for (let b = 0; b < 5; b++) await batch(8, `before${b}`);
  assert.equal(accepted.size, 40, 'every session before the kill relayed');

  const sessionLines = await until('40 session lines', () => {
    const lines = serve.logs.filter((l) => l.msg === 'session');
    return Promise.resolve(lines.length >= 40 ? lines : undefined);
  });
  const byWorker = new Map<unknown, number>();
  for (const l of sessionLines) byWorker.set(l.worker, (byWorker.get(l.worker) ?? 0) + 1);
  t.diagnostic(`sessions per worker: ${JSON.stringify(Object.fromEntries(byWorker))}`);
  assert.deepEqual([...byWorker.keys()].sort(), [1, 2], 'both workers served sessions, and every session line names its worker');

  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const families = parseExposition(text);
  assert.equal(total(families.get('smtp_tarpit_connections_total'), { result: 'accepted' }), 40, 'connections summed over both workers');
  assert.equal(total(families.get('smtp_tarpit_messages_total'), { result: 'relayed' }), 40);
  assert.equal(families.get('smtp_tarpit_workers')?.type, 'gauge');
  assert.equal(total(families.get('smtp_tarpit_workers'), { state: 'online' }), 2);
  assert.equal(total(families.get('smtp_tarpit_worker_restarts_total')), 0);
  assert.equal(total(families.get('smtp_tarpit_backend_up')), 1, 'backend_up is the minimum over workers, not their sum');

  // Kill worker 1 while sessions keep arriving; worker 2 keeps serving them.
  const victim = first.workers.find((w) => w.worker === 1)!;
  const survivor = first.workers.find((w) => w.worker === 2)!;
  const during = batch(8, 'during');
  // A moment in, so some of its sessions are in flight on the victim.
  await new Promise((r) => setTimeout(r, 30));
  process.kill(victim.pid, 'SIGKILL');
  await during;
  t.diagnostic(`sessions relayed in the batch during the kill: ${[...accepted].filter((id) => id.startsWith('during')).length} of 8`);
  // The replacement needs a second or more to boot: meanwhile the survivor serves everything.
  const gap = await readyz(metricsPort);
  assert.notEqual(gap.body.workers.find((w) => w.worker === 1)?.state, 'online', 'slot 1 is still being replaced');
  assert.equal(gap.status, 200, 'ready: the survivor serves');
  await batch(8, 'gap');
  const gapSources = new Set([...sourceOf].filter(([id]) => id.startsWith('gap')).map(([, source]) => source));
  assert.equal([...accepted].filter((id) => id.startsWith('gap')).length, 8, 'every session while slot 1 was down relayed');
  const gapLines = await until('the gap sessions logged', () => {
    const lines = serve.logs.filter((l) => l.msg === 'session' && gapSources.has(String(l.client)));
    return Promise.resolve(lines.length === 8 ? lines : undefined);
  });
  assert.ok(gapLines.every((l) => l.pid === survivor.pid), 'served by the surviving worker');
  const replaced = await until('slot 1 served by a new process', async () => {
    const r = await readyz(metricsPort).catch(() => undefined);
    const slot = r?.body.workers.find((w) => w.worker === 1);
    return slot !== undefined && slot.pid !== victim.pid && slot.ready ? r!.body : undefined;
  });
  assert.equal(replaced.workers.find((w) => w.worker === 2)?.pid, survivor.pid, 'the other worker was left alone');
  for (let b = 0; b < 3; b++) await batch(8, `after${b}`);

  const after = parseExposition(await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text());
  assert.equal(total(after.get('smtp_tarpit_worker_restarts_total')), 1);
  assert.equal(total(after.get('smtp_tarpit_workers'), { state: 'online' }), 2);
  assert.ok(serve.logs.some((l) => l.msg === 'worker died; starting a replacement' && l.workerPid === victim.pid && l.signal === 'SIGKILL'), 'the death is logged');

  // SIGHUP on the primary reaches every worker, each reloading as a single process does.
  serve.kill('SIGHUP');
  for (const slot of [1, 2]) await serve.waitLog((l) => l.msg === 'configuration reloaded' && l.worker === slot, 10_000);

  // No relayed message lost: every 250 reached the backend exactly once.
  serve.kill('SIGTERM');
  assert.equal(await serve.exited(), 0, serve.stderr());
  const arrived = new Map<string, number>();
  for (const m of backend.messages) {
    const id = /Subject: (\S+)/.exec(m.body.toString('latin1'))?.[1] ?? '?';
    arrived.set(id, (arrived.get(id) ?? 0) + 1);
  }
  t.diagnostic(`sessions sent ${sent}, got 250: ${accepted.size}, messages at the backend: ${backend.messages.length}`);
  for (const id of accepted) assert.equal(arrived.get(id), 1, `message ${id} got 250 and arrived ${arrived.get(id) ?? 0} times`);
  assert.ok(accepted.size >= 40 + 8 + 24, 'sessions after the replacement all relayed');
});

test('--workers 2: /readyz follows what the workers report about the backend', { timeout: 60_000 }, async (t) => {
  const backendPort = await freePort();
  const port = await freePort();
  const metricsPort = await freePort();
  const config = writeConfig({
    listen: `127.0.0.1:${port}`,
    backend: { address: `127.0.0.1:${backendPort}`, reconnect: { minDelay: 0.05, maxDelay: 0.2 } },
    metrics: { listen: `127.0.0.1:${metricsPort}` },
  });
  const serve = startServe(config, ['--workers', '2']);
  t.after(() => serve.kill('SIGKILL'));
  const down = await until('two workers online, backend down', async () => {
    const r = await readyz(metricsPort).catch(() => undefined);
    return r !== undefined && r.body.workers.filter((w) => w.state === 'online').length === 2 ? r : undefined;
  });
  assert.equal(down.status, 503);
  assert.match(down.body.reason ?? '', /^no worker can serve: /);
  const backend = await startBackend({}, backendPort);
  t.after(() => backend.close());
  const up = await until('ready once the backend answers', async () => {
    const r = await readyz(metricsPort).catch(() => undefined);
    return r?.status === 200 && r.body.workers.every((w) => w.ready) ? r : undefined;
  });
  assert.equal(up.body.ready, true);
  serve.kill('SIGTERM');
  assert.equal(await serve.exited(), 0);
});

test('--workers 2 with a bad policy directory: the primary exits 1 instead of restarting workers forever', { timeout: 60_000 }, async () => {
  const port = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, policies: '/nonexistent/policies', metrics: { listen: null } });
  const serve = startServe(config, ['--workers', '2']);
  assert.equal(await serve.exited(), 1);
  assert.ok(serve.logs.some((l) => l.level === 'fatal' && /before it served/.test(String(l.msg))), JSON.stringify(serve.logs));
});

test('workers: 0 is refused at start with the key named', async () => {
  const config = writeConfig({ workers: 0 });
  const serve = startServe(config);
  assert.equal(await serve.exited(), 1);
  assert.match(serve.stderr(), /workers/);
});
