import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigErrors } from '../../src/config/config-error.js';
import { defaultConfig, loadConfigFile, loadConfigText } from '../../src/config/load.js';

function errorsOf(text: string, overrides = {}): string[] {
  try {
    loadConfigText(text, 'site.yaml', overrides);
  } catch (err) {
    assert.ok(err instanceof ConfigErrors);
    return err.errors.map((e) => e.message);
  }
  assert.fail('expected the configuration to be refused');
}

test('the shipped configuration is valid and safe for a public port 25', () => {
  const c = loadConfigFile('config/smtp-tarpit.yaml');
  assert.deepEqual(c.listen, { host: '0.0.0.0', port: 25 });
  assert.deepEqual(c.backend.address, { host: '127.0.0.1', port: 10025 });
  assert.equal(c.smtp.bareLineEndings, 'reject');
  assert.equal(c.metrics.listen?.host, '127.0.0.1', 'metrics stay on loopback');
  assert.ok(c.limits.maxMessageSize > 0 && c.limits.maxConnections > 0 && c.limits.maxConnectionsPerClient > 0);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.backend.timeouts));
});

test('defaults fill every setting an empty file leaves out', () => {
  const c = defaultConfig();
  assert.equal(c.backlog, 4096);
  assert.equal(c.backend.timeouts.dataDone, 300);
  assert.equal(c.limits.maxRecipients, 100);
});

test('backend timeouts stay below what RFC 5321 §4.5.3.2 makes a client wait for us', () => {
  const t = defaultConfig().backend.timeouts;
  assert.ok(t.command < 300 && t.greeting < 300, 'MAIL and RCPT replies: client waits 5 min');
  assert.ok(t.dataInit < 120, 'DATA reply: client waits 2 min');
  assert.ok(t.dataBlock < 180, 'data block: client waits 3 min');
  assert.ok(t.dataDone < 600, 'final dot: client waits 10 min');
});

test('an unknown key is refused with file, line, column and its dotted name', () => {
  assert.deepEqual(errorsOf('listen: "127.0.0.1:25"\nlimits:\n  maxConections: 3\n'), [
    'site.yaml:3:3: limits.maxConections: unknown setting (check the spelling; see config/smtp-tarpit.schema.json)',
  ]);
});

test('every mistake is reported at once, each at its own line', () => {
  const errors = errorsOf('listen: 25\nsmtp:\n  bareLineEndings: keep\nbackend:\n  poolSize: 0\n');
  assert.equal(errors.length, 3, errors.join('\n'));
  assert.ok(errors.some((e) => e.startsWith('site.yaml:1:9: listen:')));
  assert.ok(errors.includes('site.yaml:3:20: smtp.bareLineEndings: must be one of "reject", "normalize"'));
  assert.ok(errors.some((e) => e.startsWith('site.yaml:5:13: backend.poolSize:')));
});

test('a YAML syntax error names its line', () => {
  const [first] = errorsOf('listen: "127.0.0.1:25"\nlimits: [\n');
  assert.match(first ?? '', /^site\.yaml:\d+:\d+: /);
});

test('IPv6 endpoints are written in brackets and parsed', () => {
  const c = loadConfigText('listen: "[::1]:2525"\nbackend:\n  address: "[::1]:10025"\n', 'v6.yaml');
  assert.deepEqual(c.listen, { host: '::1', port: 2525 });
  assert.deepEqual(c.backend.address, { host: '::1', port: 10025 });
  assert.ok(errorsOf('listen: "::1:2525"\n')[0]?.includes('must be host:port'));
});

test('command-line flags override the file, and a bad flag is blamed on the flag', () => {
  const c = loadConfigText('listen: "127.0.0.1:25"\n', 'site.yaml', { listen: '127.0.0.1:2525', backend: '[::1]:10026', metrics: 'off' });
  assert.equal(c.listen.port, 2525);
  assert.deepEqual(c.backend.address, { host: '::1', port: 10026 });
  assert.equal(c.metrics.listen, null);
  assert.deepEqual(errorsOf('{}', { listen: 'nonsense' }), ['command line: --listen: must be host:port (IPv6 as [::1]:25)']);
});

test('settings that only make sense together are checked together, located at the key', () => {
  assert.deepEqual(errorsOf('tls:\n  key: /k.pem\n'), ['site.yaml:2:3: tls: set both key and cert, or neither']);
  assert.deepEqual(errorsOf('backend:\n  poolSize: 2\n  warm: 5\n'), ['site.yaml:3:9: backend.warm: must not exceed backend.poolSize (2)']);
});

test('tarpit.maxHeld must leave room for clean clients under limits.maxConnections', () => {
  assert.throws(
    () => loadConfigText('limits:\n  maxConnections: 100\ntarpit:\n  maxHeld: 100\n', 'site.yaml'),
    (err: unknown) => err instanceof ConfigErrors && err.errors.some((e) => /^site\.yaml:4:\d+: tarpit\.maxHeld: must be below limits\.maxConnections \(100\)/.test(e.message)),
  );
  assert.equal(loadConfigText('limits:\n  maxConnections: 100\ntarpit:\n  maxHeld: 99\n', 'site.yaml').tarpit.maxHeld, 99);
});

test('state.store: memory by default, a redis:// URL, or --store; anything else is refused by name', () => {
  assert.deepEqual(loadConfigText('', 'site.yaml').state, { store: 'memory', prefix: 'smtp-tarpit:', timeout: 0.1 });
  assert.equal(loadConfigText('state: {store: "redis://10.0.0.5:6379/2"}\n', 'site.yaml').state.store, 'redis://10.0.0.5:6379/2');
  assert.equal(loadConfigText('', 'site.yaml', { store: 'redis://127.0.0.1:6379' }).state.store, 'redis://127.0.0.1:6379');
  assert.equal(loadConfigText('state: {store: "rediss://:secret@redis.example:6380/1"}\n', 'site.yaml').state.store, 'rediss://:secret@redis.example:6380/1');
  assert.deepEqual(errorsOf('state:\n  store: redis:/10.0.0.5\n'), ['site.yaml:2:10: state.store: must be memory or redis://HOST:PORT[/DB] (rediss:// for TLS)']);
  assert.throws(
    () => loadConfigText('', 'site.yaml', { store: 'mongodb://x' }),
    (err: unknown) => err instanceof ConfigErrors && err.errors.map((e) => e.message).join() === 'command line: --store: must be memory or redis://HOST:PORT[/DB] (rediss:// for TLS)',
  );
});

test('an empty, blank or comment-only configuration file is refused at file:1:1 (issue 12); {} still means the defaults', async (t) => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(tmpdir(), 'tarpit-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'smtp-tarpit.yaml');
  for (const text of ['', ' \n\t\n', '# listen: "0.0.0.0:25"\n', '---\n']) {
    writeFileSync(file, text);
    assert.throws(
      () => loadConfigFile(file),
      (err: unknown) => err instanceof ConfigErrors && err.errors.length === 1 && err.errors[0]!.message.startsWith(`${file}:1:1: the file is empty`),
      JSON.stringify(text),
    );
  }
  writeFileSync(file, '{}\n');
  assert.deepEqual(loadConfigFile(file).limits, defaultConfig().limits);
});

test('schema mistakes and the checks after them are reported together, in file order (issue 13)', () => {
  // An unknown key (schema), a port out of range (endpoint parsing) and an impossible pair (a later check), written out of check order.
  assert.deepEqual(errorsOf('backend:\n  poolSize: 2\n  warm: 5\nlisten: "0.0.0.0:99999"\nmetrics:\n  lisen: x\n'), [
    'site.yaml:3:9: backend.warm: must not exceed backend.poolSize (2)',
    'site.yaml:4:9: listen: port 99999 is out of range',
    'site.yaml:6:3: metrics.lisen: unknown setting (check the spelling; see config/smtp-tarpit.schema.json)',
  ]);
  // A setting the schema refused is not blamed again by a check that reads it, and a wrong shape does not stop the others.
  assert.deepEqual(errorsOf('backend: 5\ntls:\n  key: /k.pem\nlisten: "0.0.0.0:70000"\n'), [
    'site.yaml:1:10: backend: must be a mapping (key: value lines)',
    'site.yaml:3:3: tls: set both key and cert, or neither',
    'site.yaml:4:9: listen: port 70000 is out of range',
  ]);
});

test('a configuration found elsewhere resolves its policy directory and certificate files beside itself', async () => {
  const { mkdtempSync, rmSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(tmpdir(), 'tarpit-config-'));
  try {
    const file = path.join(dir, 'smtp-tarpit.yaml');
    writeFileSync(file, 'policies: policies\ntls:\n  key: tls/key.pem\n  cert: /abs/cert.pem\n');
    const c = loadConfigFile(file);
    assert.equal(c.policies, path.join(dir, 'policies'));
    assert.equal(c.tls.key, path.join(dir, 'tls/key.pem'));
    assert.equal(c.tls.cert, '/abs/cert.pem');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
