/**
 * The command line as an admin uses it: --version, check with located errors,
 * serve with flag overrides, SIGHUP with a broken file, SIGTERM, and a refusal
 * to start in front of a backend that does not accept XCLIENT.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SmtpClient, wireBody } from '../helpers/smtp-client.js';
import { startBackend } from '../helpers/smtp-backend.js';
import { RELAY_POLICIES } from '../helpers/with-proxy.js';
import { CONFIG_CANDIDATES, locateConfig } from '../../src/cli/config-path.js';

const CLI = ['--import', 'tsx', 'src/cli/main.ts'];

function run(...args: string[]) {
  return spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8' });
}

test('--version prints the package version', () => {
  const r = run('--version');
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), (JSON.parse(readFileSync('package.json', 'utf8')) as { version: string }).version);
});

test('--help lists serve, check and version; serve --help lists the override flags', () => {
  const r = run('--help');
  for (const c of ['serve', 'check', 'version']) assert.match(r.stdout, new RegExp(`smtp-tarpit ${c}`));
  const s = run('serve', '--help');
  for (const f of ['--config', '--listen', '--backend', '--metrics', '--policies']) assert.match(s.stdout, new RegExp(f));
  const c = run('check', '--help');
  for (const f of ['--config', '--policies']) assert.match(c.stdout, new RegExp(f));
});

test('check passes the shipped configuration and policies, and fails a broken configuration with file:line: reason, exit 1', (t) => {
  const ok = run('check', '--config', 'config/smtp-tarpit.yaml');
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stderr, '');
  assert.match(ok.stdout, /^config\/smtp-tarpit\.yaml: ok/m);
  assert.match(ok.stdout, /policies\/policy\.yaml: ok \(allow 0 entries, block 0 entries, 0 DNSBL zones, 0 DNSWL zones, 2 profiles/);
  assert.match(ok.stdout, /first contact held with "first-contact", retries relayed after 60 s, known senders: 18 rDNS suffixes and 0 networks\)$/m);
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'listen: "127.0.0.1:25"\nbackend:\n  adress: "127.0.0.1:10025"\n');
  const r = run('check', '--config', bad, '--policies', 'policies');
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), `${bad}:3:3: backend.adress: unknown setting (check the spelling; see config/smtp-tarpit.schema.json)`);
  assert.match(r.stdout, /policies\/policy\.yaml: ok/, 'the policies are still checked');
});

test('check --policies DIR validates another directory laid out the same way, printing every mistake and exit 1', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-cli-policies-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync('policies', dir, { recursive: true });
  writeFileSync(join(dir, 'block.cidr'), '# ours\n203.0.113.0/24\n198.51.100.9/24\n');
  const ok = run('check', '--config', 'config/smtp-tarpit.yaml', '--policies', dir);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, new RegExp(`${join(dir, 'policy.yaml')}: ok \\(allow 0 entries, block 2 entries,`));
  assert.equal(ok.stderr.trim(), `warning: ${join(dir, 'block.cidr')}:3:1: lists.block: host bits set in 198.51.100.9/24; matching the whole /24`);

  const policy = readFileSync(join(dir, 'policy.yaml'), 'utf8');
  const lineOf = (needle: string) => policy.split('\n').findIndex((l) => l.includes(needle)) + 1;
  writeFileSync(join(dir, 'policy.yaml'), policy.replace('  drop: 15', '  drop: 5').replace('  pipelining: 5', '  pipelineing: 5'));
  writeFileSync(join(dir, 'allow.cidr'), '192.0.2.0/24\nmx.example.org\n');
  const r = run('check', '--policies', dir);
  assert.equal(r.status, 1);
  assert.deepEqual(r.stderr.trim().split('\n'), [
    'using ./config/smtp-tarpit.yaml (no --config given)',
    `${join(dir, 'policy.yaml')}:${lineOf('  drop: 15')}:9: verdicts.drop: must be at least verdicts.reject (8): a higher score never gets a milder verdict`,
    `${join(dir, 'policy.yaml')}:${lineOf('  pipelining: 5')}:3: protocol.pipelineing: unknown setting (check the spelling; see policies/policy.schema.json)`,
    `${join(dir, 'allow.cidr')}:2:1: lists.allow: not an IP address: "mx.example.org"`,
  ]);
});

test('check reports the old greylisting.exempt as deprecated, at its line, and counts the known senders it now gives', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-cli-known-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  cpSync('policies', dir, { recursive: true });
  const policy = readFileSync(join(dir, 'policy.yaml'), 'utf8');
  const start = policy.indexOf('knownSenders:');
  const end = policy.indexOf('\n\n', start);
  // A policy written before knownSenders: its suffixes under greylisting.exempt, no knownSenders section.
  const old = policy.slice(0, start) + policy.slice(end + 2).replace('  network: { ipv4: 24, ipv6: 64 }', '  network: { ipv4: 24, ipv6: 64 }\n  exempt:\n    rdnsSuffixes: [google.com, outlook.com]\n    trustedBelow: 0');
  writeFileSync(join(dir, 'policy.yaml'), old);
  writeFileSync(join(dir, 'known-senders.cidr'), '# walked from SPF\n209.85.128.0/17\n');
  const r = run('check', '--policies', dir);
  assert.equal(r.status, 0, r.stderr);
  const line = old.split('\n').findIndex((l) => l.startsWith('  exempt:')) + 1;
  assert.equal(r.stderr.trim(), `using ./config/smtp-tarpit.yaml (no --config given)\nwarning: ${join(dir, 'policy.yaml')}:${line}:3: greylisting.exempt: deprecated: rename to knownSenders (a top-level key, same entries); known senders now skip the first-contact hold as well as greylisting`);
  assert.match(r.stdout, /known senders: 2 rDNS suffixes and 0 networks\)$/m, 'the networks file is named by knownSenders, which this policy does not write');
});

test('check names a policy directory that is not there', () => {
  const r = run('check', '--policies', 'no/such/dir');
  assert.equal(r.status, 1);
  assert.equal(r.stderr.trim(), 'using ./config/smtp-tarpit.yaml (no --config given)\nno/such/dir/policy.yaml: cannot read: no such file');
});

test('an unknown option is refused', () => {
  assert.notEqual(run('serve', '--lisen', '127.0.0.1:25').status, 0);
});

async function firstLogLine(child: ChildProcess, match: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const lines = createInterface({ input: child.stdout! });
  return new Promise((resolve, reject) => {
    lines.on('line', (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        if (match(parsed)) resolve(parsed);
      } catch {
        // not JSON
      }
    });
    child.once('exit', (code) => reject(new Error(`serve exited ${code}`)));
  });
}

test('serve relays with flags overriding the file, survives SIGHUP with a broken file, and exits 0 on SIGTERM', async (t) => {
  const backend = await startBackend();
  t.after(() => backend.close());
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'smtp-tarpit.yaml');
  writeFileSync(config, readFileSync('config/smtp-tarpit.yaml', 'utf8').replace('reverseLookup: true', 'reverseLookup: false'));
  // Started as root, the shipped config switches to nobody, who must still read the file when SIGHUP reloads it.
  chmodSync(dir, 0o755);
  const child = spawn(process.execPath, [...CLI, 'serve', '--config', config, '--policies', RELAY_POLICIES, '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${backend.port}`, '--metrics', '127.0.0.1:0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  const ready = await firstLogLine(child, (l) => l.msg === 'smtp-tarpit listening');
  const port = (ready.listen as { port: number }).port;
  const metricsPort = (ready.metrics as { port: number }).port;

  const client = await SmtpClient.open({ port });
  await client.command('EHLO cli.example');
  assert.equal((await client.send('a@sender.example', ['b@dest.example'], wireBody('Subject: cli\n\nx\n'))).end?.code, 250);
  await client.quit();

  writeFileSync(config, 'listen: [broken\n');
  const reloadFailed = firstLogLine(child, (l) => l.msg === 'reload failed; the running configuration stays in force');
  child.kill('SIGHUP');
  const failure = await reloadFailed;
  assert.match(JSON.stringify(failure.errors), /smtp-tarpit\.yaml:\d+:\d+/);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  assert.match(metrics, /smtp_tarpit_config_reloads_total\{result="error"\} 1/);
  const again = await SmtpClient.open({ port });
  await again.command('EHLO cli.example');
  assert.equal((await again.send('a@sender.example', ['b@dest.example'], wireBody('x\n'))).end?.code, 250);
  await again.quit();

  const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(backend.messages.length, 2);
});

test('serve refuses to start in front of a backend that does not offer XCLIENT', async (t) => {
  const backend = await startBackend({ xclient: false });
  t.after(() => backend.close());
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [...CLI, 'serve', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${backend.port}`, '--metrics', 'off'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('exit', (code) => resolve({ code, stderr }));
  });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /cannot start: .*XCLIENT/i);
});

test('check reports every mistake of a configuration at once, in file order, exit 1 (issue 13)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-cli-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'listen: "0.0.0.0:99999"\nbackend:\n  adress: "127.0.0.1:10025"\n  poolSize: 2\n  warm: 5\n');
  const r = run('check', '--config', bad, '--policies', 'policies');
  assert.equal(r.status, 1);
  assert.deepEqual(r.stderr.trim().split('\n'), [
    `${bad}:1:9: listen: port 99999 is out of range`,
    `${bad}:3:3: backend.adress: unknown setting (check the spelling; see config/smtp-tarpit.schema.json)`,
    `${bad}:5:9: backend.warm: must not exceed backend.poolSize (2)`,
  ]);
});

test('the fatal start-up line states its reason once, with no stack trace (issue 13)', async (t) => {
  const backend = await startBackend({ xclient: false });
  t.after(() => backend.close());
  const child = spawn(process.execPath, [...CLI, 'serve', '--listen', '127.0.0.1:0', '--backend', `127.0.0.1:${backend.port}`, '--metrics', 'off'], { stdio: ['ignore', 'pipe', 'ignore'] });
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 1);
  const fatal = stdout.split('\n').filter((l) => l.includes('"level":"fatal"'));
  assert.equal(fatal.length, 1, stdout);
  const line = fatal[0] ?? '';
  assert.match(line, /cannot start: .*XCLIENT/);
  assert.equal(line.split('does not offer XCLIENT').length - 1, 1, `the reason once: ${line}`);
  assert.doesNotMatch(line, /stack/);
  assert.equal((JSON.parse(line) as { code?: string }).code, 'TARPIT_ERR_BACKEND_NO_XCLIENT');
});

test('without --config, check and serve use ./config/smtp-tarpit.yaml and say so; with no default file, both name the two paths they looked in (issue 13)', (t) => {
  const here = run('check');
  assert.equal(here.status, 0, here.stderr);
  assert.equal(here.stderr, 'using ./config/smtp-tarpit.yaml (no --config given)\n');
  assert.match(here.stdout, /^config\/smtp-tarpit\.yaml: ok/m);

  // The second place is this machine's /etc, which a test must not write: only its absence is checked here.
  if (existsSync('/etc/smtp-tarpit/smtp-tarpit.yaml')) {
    t.diagnostic('/etc/smtp-tarpit/smtp-tarpit.yaml exists on this machine: the no-configuration error is not checked');
    return;
  }
  const empty = mkdtempSync(join(tmpdir(), 'tarpit-cli-noconfig-'));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  const want = 'no configuration file: neither ./config/smtp-tarpit.yaml nor /etc/smtp-tarpit/smtp-tarpit.yaml exists; name one with --config FILE, or write one with smtp-tarpit init\n';
  for (const command of ['check', 'serve']) {
    const r = spawnSync(process.execPath, ['--import', import.meta.resolve('tsx'), join(process.cwd(), 'src/cli/main.ts'), command], { cwd: empty, encoding: 'utf8' });
    assert.equal(r.status, 1, `${command}: ${r.stderr}`);
    assert.equal(r.stderr, want, command);
    assert.equal(r.stdout, '', command);
  }
});

test('the default configuration is looked for in ./config, then /etc/smtp-tarpit, and the note says which was used and what was missing', () => {
  const candidates = ['config/smtp-tarpit.yaml', '/etc/smtp-tarpit/smtp-tarpit.yaml'];
  assert.deepEqual(locateConfig('site.yaml', candidates, () => false), { file: 'site.yaml' }, '--config is taken as given, found or not');
  assert.deepEqual(locateConfig(undefined, candidates, () => true), { file: 'config/smtp-tarpit.yaml', note: 'using ./config/smtp-tarpit.yaml (no --config given)' });
  assert.deepEqual(locateConfig(undefined, candidates, (p) => p.startsWith('/etc/')), {
    file: '/etc/smtp-tarpit/smtp-tarpit.yaml',
    note: 'using /etc/smtp-tarpit/smtp-tarpit.yaml (no --config given; ./config/smtp-tarpit.yaml not found)',
  });
  assert.match((locateConfig(undefined, candidates, () => false) as { error: string }).error, /neither \.\/config\/smtp-tarpit\.yaml nor \/etc\/smtp-tarpit\/smtp-tarpit\.yaml exists/);
  assert.deepEqual(CONFIG_CANDIDATES, candidates);
});
