/**
 * deploy/systemd: the unit passes `systemd-analyze verify` (and a copy with a
 * misspelt directive does not, so the check can fail), keeps its hardening
 * (`systemd-analyze security` exposure), stops later than the shutdown grace,
 * and the sysusers.d file creates the user the unit runs as. The nightly
 * known-senders refresh (smtp-tarpit-spf.service and .timer) passes verify
 * too, keeps its sandbox, and runs `allowlist spf` into the policy directory.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfig } from '../../src/config/load.js';
import { requireTool } from '../helpers/require-tool.js';

const DIR = fileURLToPath(new URL('../../deploy/systemd/', import.meta.url));
const UNIT = 'smtp-tarpit.service';
const UNIT_TEXT = readFileSync(join(DIR, UNIT), 'utf8');

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Copies `text` as smtp-tarpit.service into a fresh directory. */
function unitDir(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-unit-'));
  writeFileSync(join(dir, UNIT), text);
  return dir;
}

/**
 * `systemd-analyze verify` exits 0 on unknown keys and bad values (it ignores
 * them, as systemd would): only its diagnostics tell. Every diagnostic about
 * our unit counts, except that /usr/bin/node may be missing on a machine that
 * installs Node elsewhere (the unit documents the path).
 */
async function verify(text: string): Promise<{ code: number; complaints: string[] }> {
  const dir = unitDir(text);
  try {
    const r = await run('systemd-analyze', ['verify', '--man=no', join(dir, UNIT)]);
    const complaints = (r.stdout + r.stderr)
      .split('\n')
      .filter((l) => l.includes(UNIT))
      .filter((l) => existsSync('/usr/bin/node') || !l.includes('Command /usr/bin/node is not executable'));
    return { code: r.code, complaints };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The value of `key=` in the unit (the last one wins, as in systemd). */
function directive(text: string, key: string): string | undefined {
  const values = text
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1).trim());
  return values.at(-1);
}

test('the unit passes systemd-analyze verify with no complaint', async (t) => {
  if (!requireTool(t, 'systemd-analyze')) return;
  const r = await verify(UNIT_TEXT);
  assert.deepEqual(r.complaints, []);
  assert.equal(r.code, 0);
});

test('verify catches a misspelt directive, a bad value and a missing binary (the check can fail)', async (t) => {
  if (!requireTool(t, 'systemd-analyze')) return;
  const broken = [
    { change: UNIT_TEXT.replace('\nNoNewPrivileges=yes', '\nNoNewPrivilege=yes'), expect: /Unknown key 'NoNewPrivilege'/ },
    { change: UNIT_TEXT.replace('\nProtectSystem=strict', '\nProtectSystem=stricter'), expect: /stricter/ },
    { change: UNIT_TEXT.replace(/\nExecStart=\/usr\/bin\/node /, '\nExecStart=/usr/bin/no-such-node '), expect: /no-such-node/ },
  ];
  for (const b of broken) {
    assert.notEqual(b.change, UNIT_TEXT, 'the deliberate mistake must change the unit');
    const r = await verify(b.change);
    assert.ok(r.complaints.some((l) => b.expect.test(l)), `expected a complaint matching ${b.expect}, got ${JSON.stringify(r.complaints)}`);
  }
});

test('the unit keeps its hardening: systemd-analyze security exposure at most 2.0', async (t) => {
  if (!requireTool(t, 'systemd-analyze')) return;
  const dir = unitDir(UNIT_TEXT);
  const weakDir = unitDir(UNIT_TEXT.replace(/\n(NoNewPrivileges|ProtectSystem|CapabilityBoundingSet|PrivateDevices|SystemCallFilter)=.*/g, ''));
  try {
    // --threshold fails the command when the exposure (0-100 here, 0-10 in the printout) is above it.
    const good = await run('systemd-analyze', ['security', '--offline=yes', '--threshold=20', join(dir, UNIT)]);
    assert.equal(good.code, 0, good.stdout.split('\n').filter((l) => l.includes('Overall')).join('\n'));
    const weak = await run('systemd-analyze', ['security', '--offline=yes', '--threshold=20', join(weakDir, UNIT)]);
    assert.notEqual(weak.code, 0, 'a unit without its hardening must fail the same threshold');
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(weakDir, { recursive: true, force: true });
  }
});

test('the unit runs unprivileged with only CAP_NET_BIND_SERVICE, reloads with SIGHUP, and outlasts the shutdown grace', () => {
  assert.equal(directive(UNIT_TEXT, 'User'), 'smtp-tarpit');
  assert.equal(directive(UNIT_TEXT, 'Group'), 'smtp-tarpit');
  assert.equal(directive(UNIT_TEXT, 'AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
  assert.equal(directive(UNIT_TEXT, 'CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
  assert.equal(directive(UNIT_TEXT, 'ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(directive(UNIT_TEXT, 'KillSignal'), 'SIGTERM');
  assert.match(directive(UNIT_TEXT, 'ExecStart') ?? '', /^\/usr\/bin\/node \/opt\/smtp-tarpit\/dist\/cli\/main\.js serve --config \/etc\/smtp-tarpit\/smtp-tarpit\.yaml/);
  const stop = Number(/^(\d+)s?$/.exec(directive(UNIT_TEXT, 'TimeoutStopSec') ?? '')?.[1]);
  const grace = defaultConfig().shutdown.grace;
  const shipped = Number(/^\s+grace:\s*(\d+)/m.exec(readFileSync(fileURLToPath(new URL('../../config/smtp-tarpit.yaml', import.meta.url)), 'utf8'))?.[1]);
  assert.ok(stop > grace && stop > shipped, `TimeoutStopSec ${stop} must exceed shutdown.grace (default ${grace}, shipped ${shipped})`);
  assert.ok(Number(directive(UNIT_TEXT, 'LimitNOFILE')) >= defaultConfig().limits.maxConnections * 2, 'every client and backend connection is a file descriptor');
});

test('the sysusers.d file creates the smtp-tarpit user and group with no login shell', async (t) => {
  if (!requireTool(t, 'systemd-sysusers')) return;
  const root = mkdtempSync(join(tmpdir(), 'tarpit-sysusers-'));
  try {
    mkdirSync(join(root, 'etc'));
    const conf = join(root, 'smtp-tarpit.conf');
    copyFileSync(join(DIR, 'smtp-tarpit.sysusers.conf'), conf);
    const r = await run('systemd-sysusers', [`--root=${root}`, conf]);
    assert.equal(r.code, 0, r.stderr);
    const passwd = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('smtp-tarpit:'));
    assert.ok(passwd, 'no smtp-tarpit line in passwd');
    assert.equal(passwd.split(':')[6], '/usr/sbin/nologin');
    assert.match(readFileSync(join(root, 'etc/group'), 'utf8'), /^smtp-tarpit:/m);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

const SPF_SERVICE = 'smtp-tarpit-spf.service';
const SPF_TIMER = 'smtp-tarpit-spf.timer';
const SPF_SERVICE_TEXT = readFileSync(join(DIR, SPF_SERVICE), 'utf8');
const SPF_TIMER_TEXT = readFileSync(join(DIR, SPF_TIMER), 'utf8');

/** As verify(), for the refresh service and its timer side by side (a timer is checked with the unit it starts). */
async function verifySpf(service: string, timer: string): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-unit-'));
  try {
    writeFileSync(join(dir, SPF_SERVICE), service);
    writeFileSync(join(dir, SPF_TIMER), timer);
    const r = await run('systemd-analyze', ['verify', '--man=no', join(dir, SPF_SERVICE), join(dir, SPF_TIMER)]);
    return (r.stdout + r.stderr)
      .split('\n')
      .filter((l) => l.includes(SPF_SERVICE) || l.includes(SPF_TIMER))
      .filter((l) => existsSync('/usr/bin/node') || !l.includes('Command /usr/bin/node is not executable'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('the known-senders refresh service and timer pass systemd-analyze verify with no complaint', async (t) => {
  if (!requireTool(t, 'systemd-analyze')) return;
  assert.deepEqual(await verifySpf(SPF_SERVICE_TEXT, SPF_TIMER_TEXT), []);
});

test('verify catches a misspelt directive in the refresh service and a timer that would never fire', async (t) => {
  if (!requireTool(t, 'systemd-analyze')) return;
  const broken = [
    { service: SPF_SERVICE_TEXT.replace('\nReadWritePaths=', '\nReadWritePath='), timer: SPF_TIMER_TEXT, expect: /Unknown key 'ReadWritePath'/ },
    { service: SPF_SERVICE_TEXT, timer: SPF_TIMER_TEXT.replace('\nOnCalendar=', '\nOnCalender='), expect: /OnCalender|lacks value setting/ },
  ];
  for (const b of broken) {
    assert.ok(b.service !== SPF_SERVICE_TEXT || b.timer !== SPF_TIMER_TEXT, 'the deliberate mistake must change a unit');
    const complaints = await verifySpf(b.service, b.timer);
    assert.ok(complaints.some((l) => b.expect.test(l)), `expected a complaint matching ${b.expect}, got ${JSON.stringify(complaints)}`);
  }
});

test('the refresh service stays sandboxed: systemd-analyze security exposure at most 2.5 (it runs as root, with only CAP_CHOWN)', async (t) => {
  if (!requireTool(t, 'systemd-analyze')) return;
  const dir = mkdtempSync(join(tmpdir(), 'tarpit-unit-'));
  try {
    writeFileSync(join(dir, SPF_SERVICE), SPF_SERVICE_TEXT);
    const r = await run('systemd-analyze', ['security', '--offline=yes', '--threshold=25', join(dir, SPF_SERVICE)]);
    assert.equal(r.code, 0, r.stdout.split('\n').filter((l) => l.includes('Overall')).join('\n'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the refresh service writes known-senders.cidr into the policy directory only, then reloads the proxy; the timer runs it nightly', () => {
  assert.equal(directive(SPF_SERVICE_TEXT, 'Type'), 'oneshot');
  const exec = directive(SPF_SERVICE_TEXT, 'ExecStart') ?? '';
  assert.match(exec, /^\/usr\/bin\/node \/opt\/smtp-tarpit\/dist\/cli\/main\.js allowlist spf --config \/etc\/smtp-tarpit\/smtp-tarpit\.yaml --output \/etc\/smtp-tarpit\/policies\/known-senders\.cidr \$SPF_DOMAINS$/);
  assert.match(SPF_SERVICE_TEXT, /^Environment="SPF_DOMAINS=[a-z0-9. -]+"$/m, 'domains to edit with systemctl edit');
  assert.equal(directive(SPF_SERVICE_TEXT, 'ReadWritePaths'), '/etc/smtp-tarpit/policies', 'the --output directory, and nothing else, is writable');
  assert.equal(directive(SPF_SERVICE_TEXT, 'ProtectSystem'), 'strict');
  assert.equal(directive(SPF_SERVICE_TEXT, 'CapabilityBoundingSet'), 'CAP_CHOWN');
  assert.equal(directive(SPF_SERVICE_TEXT, 'ExecStopPost'), '-+/bin/systemctl reload smtp-tarpit.service');
  assert.match(directive(SPF_TIMER_TEXT, 'OnCalendar') ?? '', /^\*-\*-\* \d\d:\d\d:\d\d$/);
  assert.equal(directive(SPF_TIMER_TEXT, 'Persistent'), 'true');
  assert.equal(directive(SPF_TIMER_TEXT, 'Unit'), undefined, 'the timer starts the service of the same name');
  assert.equal(directive(SPF_TIMER_TEXT, 'WantedBy'), 'timers.target');
});
