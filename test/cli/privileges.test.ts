import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { createServer } from 'node:net';
import { inCI, type TestContext } from '../helpers/require-tool.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { ROOT, freePort, startServe, uidsOf, writeConfig, letOthersReachRoot } from './serve-process.js';

// Debian's nobody/nogroup, as in the shipped config.
const NOBODY = 65534;

/** These tests start the CLI as root; elsewhere they skip with the reason, but CI runs as root and must run them. */
function requireRoot(t: TestContext): boolean {
  if (process.getuid?.() === 0) return true;
  if (inCI) assert.fail('privilege-drop tests need root, and CI (CI=true) runs as root');
  t.skip('needs root: the privilege drop is tested by starting smtp-tarpit as root');
  return false;
}

/** A free privileged loopback port (below 1024: only root may bind it). */
async function freePrivilegedPort(): Promise<number> {
  for (let port = 700; port < 1000; port++) {
    const server = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      await new Promise((resolve) => server.close(resolve));
      return port;
    }
  }
  throw new Error('no free port in 700-999');
}

async function relayOne(port: number): Promise<number | undefined> {
  const client = await SmtpClient.open({ port, timeout: 5000 });
  await client.command('EHLO client.example');
  const r = await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: x\n\nx\n'));
  await client.quit();
  return r.end?.code;
}

test('started as root with user nobody: the accepting process runs as nobody, serves, and warns about a file it cannot re-read', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const backend = await startBackend();
  t.after(() => backend.close());
  const port = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, backend: { address: `127.0.0.1:${backend.port}` }, metrics: { listen: null }, user: 'nobody', group: 'nogroup' });
  // Root-only: a SIGHUP reload as nobody could not read it.
  chmodSync(config, 0o600);
  const serve = startServe(config);
  t.after(() => serve.kill('SIGKILL'));
  await serve.waitLog((l) => l.msg === 'switched from root to the configured user and group');
  const pid = serve.child.pid!;
  assert.deepEqual(await uidsOf(pid), [NOBODY, NOBODY, NOBODY, NOBODY], 'real, effective, saved and filesystem uid');
  assert.equal(await relayOne(port), 250, 'serves after the drop');
  const warning = await serve.waitLog((l) => l.level === 'warn' && l.path === config);
  assert.match(String(warning.msg), /not readable/);
  serve.kill('SIGTERM');
  assert.equal(await serve.exited(), 0, serve.stderr());
});

test('--workers 2 started as root with user nobody: every worker and then the primary run as nobody', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const backend = await startBackend();
  t.after(() => backend.close());
  const port = await freePort();
  const metricsPort = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, backend: { address: `127.0.0.1:${backend.port}` }, metrics: { listen: `127.0.0.1:${metricsPort}` }, user: 'nobody', group: 'nogroup' });
  const serve = startServe(config, ['--workers', '2']);
  t.after(() => serve.kill('SIGKILL'));
  await serve.waitLog((l) => l.msg === 'smtp-tarpit listening' && l.worker === undefined);
  const ready = (await (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).json()) as { workers: Array<{ pid: number }>; privilegesDropped: boolean };
  assert.equal(ready.workers.length, 2);
  for (const w of ready.workers) assert.deepEqual(await uidsOf(w.pid), [NOBODY, NOBODY, NOBODY, NOBODY], `worker ${w.pid}`);
  assert.deepEqual(await uidsOf(serve.child.pid!), [NOBODY, NOBODY, NOBODY, NOBODY], 'primary');
  assert.equal(ready.privilegesDropped, true);
  assert.equal(await relayOne(port), 250);
  serve.kill('SIGTERM');
  assert.equal(await serve.exited(), 0, serve.stderr());
});

test('--workers 2 on a privileged port: when every worker dies the dropped primary cannot bind again, says so and exits 1', { timeout: 60_000 }, async (t) => {
  if (!requireRoot(t)) return;
  letOthersReachRoot(t);
  const backend = await startBackend();
  t.after(() => backend.close());
  const port = await freePrivilegedPort();
  const metricsPort = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, backend: { address: `127.0.0.1:${backend.port}` }, metrics: { listen: `127.0.0.1:${metricsPort}` }, user: 'nobody', group: 'nogroup' });
  const serve = startServe(config, ['--workers', '2']);
  t.after(() => serve.kill('SIGKILL'));
  await serve.waitLog((l) => l.msg === 'smtp-tarpit listening' && l.worker === undefined);
  assert.equal(await relayOne(port), 250);
  const ready = (await (await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).json()) as { workers: Array<{ pid: number }> };
  for (const w of ready.workers) process.kill(w.pid, 'SIGKILL');
  assert.equal(await serve.exited(), 1);
  const fatal = serve.logs.find((l) => l.level === 'fatal' && l.worker === undefined);
  assert.match(String(fatal?.msg), /no longer runs as root to bind 127\.0\.0\.1:\d+ again/, JSON.stringify(serve.logs));
});

test('root, no user, a public listen address and allowRoot false: refused with the reason, exit 1', { timeout: 30_000 }, async (t) => {
  if (!requireRoot(t)) return;
  // Refused before anything binds, so 0.0.0.0 is never actually opened.
  const config = writeConfig({ listen: `0.0.0.0:${await freePort()}`, metrics: { listen: null } });
  for (const args of [[], ['--workers', '2']]) {
    const serve = startServe(config, args);
    assert.equal(await serve.exited(), 1, `serve ${args.join(' ')}`);
    assert.match(serve.stderr(), /refusing to run as root on a public address \(0\.0\.0\.0:\d+\).*set user and group/);
    assert.ok(!serve.logs.some((l) => l.msg === 'smtp-tarpit listening'));
  }
});

test('root on loopback without user keeps running: only a public address is refused', { timeout: 30_000 }, async (t) => {
  if (!requireRoot(t)) return;
  const backend = await startBackend();
  t.after(() => backend.close());
  const port = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, backend: { address: `127.0.0.1:${backend.port}` }, metrics: { listen: null } });
  const serve = startServe(config);
  t.after(() => serve.kill('SIGKILL'));
  await serve.waitLog((l) => l.msg === 'smtp-tarpit listening');
  assert.equal((await uidsOf(serve.child.pid!))[0], 0);
  // A served session also means the SIGTERM handler is in place: 'listening' is logged a promise job
  // before it, and a SIGTERM in that gap (a loaded machine widens it) kills with the default action.
  assert.equal(await relayOne(port), 250, 'serves');
  serve.kill('SIGTERM');
  assert.equal(await serve.exited(), 0);
});

test('check validates the new keys: user needs group, workers at least 1, allowRoot a boolean', () => {
  const config = writeConfig({ user: 'nobody', workers: 0, allowRoot: 'yes' });
  const schemaRun = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'check', '--config', config], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(schemaRun.status, 1);
  assert.match(schemaRun.stderr, /:\d+:\d+: workers: must be >= 1/);
  assert.match(schemaRun.stderr, /:\d+:\d+: allowRoot: must be true or false/);
  const pair = writeConfig({ user: 'nobody' });
  const pairRun = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'check', '--config', pair], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(pairRun.status, 1);
  assert.match(pairRun.stderr, /:\d+:\d+: user: set both user and group, or neither/);
});

test('not started as root: user and group are ignored with an info line, the process keeps its uid', { timeout: 30_000 }, async (t) => {
  if (!requireRoot(t)) return;
  letOthersReachRoot(t);
  const backend = await startBackend();
  t.after(() => backend.close());
  const port = await freePort();
  const config = writeConfig({ listen: `127.0.0.1:${port}`, backend: { address: `127.0.0.1:${backend.port}` }, metrics: { listen: null }, user: 'daemon', group: 'daemon' });
  // As nobody, the way systemd starts it with CAP_NET_BIND_SERVICE (a high port needs no capability).
  const serve = startServe(config, [], { uid: NOBODY, gid: NOBODY });
  t.after(() => serve.kill('SIGKILL'));
  const ignored = await serve.waitLog((l) => l.msg === 'user and group ignored: the process was not started as root');
  assert.equal(ignored.user, 'daemon');
  await serve.waitLog((l) => l.msg === 'smtp-tarpit listening');
  assert.equal((await uidsOf(serve.child.pid!))[0], NOBODY);
  assert.equal(await relayOne(port), 250);
  serve.kill('SIGTERM');
  assert.equal(await serve.exited(), 0, serve.stderr());
});
