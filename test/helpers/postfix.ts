/**
 * A private, throw-away Postfix instance for integration tests.
 *
 * Contract:
 * - Never touches the system instance: everything (main.cf, master.cf, queue, data, mailboxes, log)
 *   lives in one mkdtemp scratch folder; several instances can run at once.
 * - Needs root (Postfix's master must start as root) and the `postfix` package; callers check with
 *   `requireTool(t, 'postfix')` first.
 * - Nothing leaves the machine: the only deliverable domain is `localDomain` (virtual(8) into Maildirs
 *   under the scratch folder); everything else goes to the `error` transport. DNS is off, because the
 *   machine's resolver is not reachable (docs/platform-notes.md, "The machines").
 * - The alternate configuration directory is used with `postfix -c DIR`; as root Postfix 3.7 does not
 *   ask for it in `alternate_config_directories`, so /etc/postfix/main.cf is neither needed nor written.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { findTool, inCI, requireTool, type TestContext } from './require-tool.js';

const execFileAsync = promisify(execFile);

/** Options for {@link startPostfix}. */
export interface PostfixOptions {
  /** `smtpd_authorized_xclient_hosts`: who may send XCLIENT. @default '' (nobody) */
  xclientHosts?: string;
  /** `mynetworks`: clients allowed to relay. @default '127.0.0.0/8' */
  mynetworks?: string;
  /** The one domain delivered locally (virtual mailboxes). @default 'local.test' */
  localDomain?: string;
  /** Mailbox users of `localDomain`; `postmaster` is always added. @default ['alice', 'bob'] */
  localUsers?: string[];
  /** `message_size_limit` in bytes. @default 10240000 */
  messageSizeLimit?: number;
  /** Extra or overriding main.cf parameters, written last. */
  extraMain?: Record<string, string>;
}

/** A running private Postfix. */
export interface PostfixInstance {
  readonly host: '127.0.0.1';
  /** The smtpd listener's TCP port (kept across {@link PostfixInstance.restart}). */
  readonly port: number;
  readonly localDomain: string;
  /** The `postfix -c` directory holding main.cf and master.cf. */
  readonly configDir: string;
  /** The mkdtemp folder holding everything; removed by {@link PostfixInstance.stop}. */
  readonly scratchDir: string;
  /** Delivered messages of `user@localDomain`, oldest first, each the full text (Return-Path, Delivered-To, Received…). */
  readMailbox(user: string): Promise<string[]>;
  /** Polls until `user` has at least `count` messages; rejects after `timeoutMs` with the log tail. */
  waitForMessages(user: string, count: number, timeoutMs?: number): Promise<string[]>;
  /** The instance's maillog text so far ('' before the first line). */
  log(): Promise<string>;
  /** Polls the maillog until one line matches; resolves with that line. */
  waitForLog(regex: RegExp, timeoutMs?: number): Promise<string>;
  /** Live (non-zombie) processes of this instance: master and its children. */
  pids(): Promise<number[]>;
  /** `postfix stop`, waits for the master, kills leftovers, removes the scratch folder. Idempotent. */
  stop(): Promise<void>;
  /** Stops and starts again on the same port with the same queue and mailboxes (fault tests). */
  restart(): Promise<void>;
}

/** Milliseconds to wait for the 220 banner after `postfix start`. */
const START_TIMEOUT_MS = 15_000;
/** Milliseconds to wait for the master to exit after `postfix stop`. */
const STOP_TIMEOUT_MS = 10_000;
const POLL_MS = 50;

let instanceCounter = 0;

/** Starts a private Postfix and resolves once its smtpd answers 220 on 127.0.0.1. */
export async function startPostfix(options: PostfixOptions = {}): Promise<PostfixInstance> {
  if (process.getuid?.() !== 0) {
    throw new Error('startPostfix needs root: the Postfix master must start as root');
  }
  const postfixBin = findTool('postfix');
  if (postfixBin === undefined) {
    throw new Error('postfix not installed: apt-get install postfix');
  }

  const localDomain = options.localDomain ?? 'local.test';
  const users = [...new Set([...(options.localUsers ?? ['alice', 'bob']), 'postmaster'])];
  const { uid, gid } = await postfixAccount();

  const scratchDir = await mkdtemp(path.join(tmpdir(), 'smtp-tarpit-postfix-'));
  // mkdtemp makes 0700; the unprivileged daemons (user postfix) must traverse every parent of the spool.
  await chmod(scratchDir, 0o755);
  for (let dir = path.dirname(scratchDir); ; dir = path.dirname(dir)) {
    if (((await stat(dir)).mode & 0o001) === 0) {
      await rm(scratchDir, { recursive: true, force: true });
      throw new Error(`${dir} is not o+x, so Postfix's unprivileged daemons cannot reach the spool; point TMPDIR elsewhere`);
    }
    if (dir === path.dirname(dir)) break;
  }
  const configDir = path.join(scratchDir, 'etc');
  const queueDir = path.join(scratchDir, 'spool');
  const dataDir = path.join(scratchDir, 'data');
  const mailDir = path.join(scratchDir, 'mail');
  const logFile = path.join(scratchDir, 'maillog');
  for (const dir of [configDir, queueDir, dataDir, mailDir]) {
    await mkdir(dir, { mode: 0o755 });
  }
  await chown(dataDir, uid, gid);
  // virtual(8) creates each Maildir as the mailbox owner.
  await chown(mailDir, uid, gid);

  const port = await freePort();
  const id = `${process.pid}-${++instanceCounter}`;

  const main: Record<string, string> = {
    compatibility_level: '3.6',
    queue_directory: queueDir,
    data_directory: dataDir,
    mail_owner: 'postfix',
    setgid_group: 'postdrop',
    // Logs without syslog: postlogd (master.cf `postlog`) writes here; the prefix list must allow the path.
    maillog_file: logFile,
    maillog_file_prefixes: scratchDir,
    syslog_name: `postfix-test-${id}`,
    inet_interfaces: 'loopback-only',
    inet_protocols: 'all',
    myhostname: `mx.${localDomain}`,
    mydomain: localDomain,
    myorigin: '$mydomain',
    // Local delivery goes through virtual(8), not local(8): no aliases database, no home directories.
    mydestination: '',
    local_recipient_maps: '',
    alias_maps: '',
    alias_database: '',
    virtual_mailbox_domains: localDomain,
    virtual_mailbox_base: mailDir,
    // A trailing slash makes each mailbox a Maildir: one file per message, nothing to split.
    virtual_mailbox_maps: `inline:{ ${users.map((u) => `${u}@${localDomain}=${u}/`).join(', ')} }`,
    virtual_uid_maps: `static:${uid}`,
    virtual_gid_maps: `static:${gid}`,
    virtual_minimum_uid: String(Math.min(uid, 100)),
    // Nothing ever leaves the machine.
    relayhost: '',
    default_transport: 'error:foreign mail not delivered in tests',
    relay_transport: 'error:foreign mail not delivered in tests',
    smtpd_relay_restrictions: 'permit_mynetworks, reject_unauth_destination',
    mynetworks: options.mynetworks ?? '127.0.0.0/8',
    smtpd_authorized_xclient_hosts: options.xclientHosts ?? '',
    smtputf8_enable: 'yes',
    message_size_limit: String(options.messageSizeLimit ?? 10_240_000),
    // The resolver is unreachable here: no DNS anywhere, no reverse lookup of clients.
    smtp_dns_support_level: 'disabled',
    lmtp_dns_support_level: 'disabled',
    smtpd_peername_lookup: 'no',
    // Fast queue: deliveries are immediate anyway; retries and bounces should not wait minutes.
    queue_run_delay: '1s',
    minimal_backoff_time: '1s',
    maximal_backoff_time: '2s',
    maximal_queue_lifetime: '1m',
    bounce_queue_lifetime: '1m',
    delay_warning_time: '0h',
    in_flow_delay: '0s',
    smtpd_error_sleep_time: '0s',
    smtpd_soft_error_limit: '100',
    smtpd_hard_error_limit: '100',
    biff: 'no',
    append_dot_mydomain: 'no',
    smtpd_tls_security_level: 'none',
    smtp_tls_security_level: 'none',
    ...options.extraMain,
  };
  await writeFile(path.join(configDir, 'main.cf'), renderMain(main));
  await writeFile(path.join(configDir, 'master.cf'), renderMaster(port));

  let masterPid: number | undefined;
  let stopped = false;

  const postfix = async (command: 'check' | 'start' | 'stop'): Promise<string> => {
    try {
      const { stdout, stderr } = await execFileAsync(postfixBin, ['-c', configDir, command], {
        timeout: STOP_TIMEOUT_MS,
      });
      return stdout + stderr;
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      const logText = await readLog(logFile);
      throw new Error(
        `postfix -c ${configDir} ${command} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}\nmaillog:\n${logText}`,
      );
    }
  };

  const readMasterPid = async (): Promise<number | undefined> => {
    try {
      const text = await readFile(path.join(queueDir, 'pid', 'master.pid'), 'utf8');
      const pid = Number.parseInt(text.trim(), 10);
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  };

  const pids = async (): Promise<number[]> => instanceProcesses(configDir, masterPid);

  const boot = async (): Promise<void> => {
    // While the master is down, `postfix check` runs postsuper, which logs straight to maillog_file after
    // dropping to mail_owner; a restart that killed a session mid-message leaves a partial queue file it
    // warns about, and with a root-owned log that warning is fatal ("open logfile: Permission denied").
    await writeFile(logFile, '', { flag: 'a' });
    await chown(logFile, uid, gid);
    await postfix('check');
    await postfix('start');
    masterPid = await readMasterPid();
    await waitForBanner(port, START_TIMEOUT_MS, () => readLog(logFile));
  };

  const halt = async (): Promise<void> => {
    masterPid ??= await readMasterPid();
    if (masterPid !== undefined && isAlive(masterPid)) {
      // `postfix stop` fails when the master is already gone (e.g. a fault test killed it); that is fine.
      await postfix('stop').catch(() => undefined);
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while (isAlive(masterPid) && Date.now() < deadline) await sleep(POLL_MS);
    }
    for (const pid of await pids()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    masterPid = undefined;
  };

  const readMailbox = async (user: string): Promise<string[]> => {
    const box = path.join(mailDir, user);
    const names: { file: string; key: [number, number, string] }[] = [];
    for (const sub of ['new', 'cur']) {
      let entries: string[];
      try {
        entries = await readdir(path.join(box, sub));
      } catch {
        continue;
      }
      for (const name of entries) names.push({ file: path.join(box, sub, name), key: maildirOrder(name) });
    }
    names.sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.key[2].localeCompare(b.key[2]));
    return Promise.all(names.map((n) => readFile(n.file, 'utf8')));
  };

  const instance: PostfixInstance = {
    host: '127.0.0.1',
    port,
    localDomain,
    configDir,
    scratchDir,
    readMailbox,
    async waitForMessages(user, count, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const messages = await readMailbox(user);
        if (messages.length >= count) return messages;
        if (Date.now() >= deadline) {
          throw new Error(
            `timed out after ${timeoutMs} ms waiting for ${count} message(s) for ${user}@${localDomain}, have ${messages.length}\nmaillog:\n${tail(await readLog(logFile))}`,
          );
        }
        await sleep(POLL_MS);
      }
    },
    log: () => readLog(logFile),
    async waitForLog(regex, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = (await readLog(logFile)).split('\n').find((l) => {
          regex.lastIndex = 0;
          return regex.test(l);
        });
        if (line !== undefined) return line;
        if (Date.now() >= deadline) {
          throw new Error(`timed out after ${timeoutMs} ms waiting for ${String(regex)} in maillog:\n${tail(await readLog(logFile))}`);
        }
        await sleep(POLL_MS);
      }
    },
    pids,
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt();
      await rm(scratchDir, { recursive: true, force: true });
    },
    async restart() {
      if (stopped) throw new Error('restart() after stop()');
      await halt();
      await boot();
    },
  };

  try {
    await boot();
  } catch (error) {
    await instance.stop().catch(() => undefined);
    throw error;
  }
  return instance;
}

function renderMain(params: Record<string, string>): string {
  return `# Generated by test/helpers/postfix.ts\n${Object.entries(params)
    .map(([k, v]) => `${k} = ${v}`)
    .join('\n')}\n`;
}

/** Standard services from Debian's master.cf, none chrooted (a chroot would need /etc files copied in). */
function renderMaster(port: number): string {
  const rows: [string, string, string, string, string, string, string, string][] = [
    // service, type, private, unpriv, chroot, wakeup, maxproc, command
    [`127.0.0.1:${port}`, 'inet', 'n', '-', 'n', '-', '-', 'smtpd'],
    ['pickup', 'unix', 'n', '-', 'n', '60', '1', 'pickup'],
    ['cleanup', 'unix', 'n', '-', 'n', '-', '0', 'cleanup'],
    ['qmgr', 'unix', 'n', '-', 'n', '300', '1', 'qmgr'],
    ['tlsmgr', 'unix', '-', '-', 'n', '1000?', '1', 'tlsmgr'],
    ['rewrite', 'unix', '-', '-', 'n', '-', '-', 'trivial-rewrite'],
    ['bounce', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['defer', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['trace', 'unix', '-', '-', 'n', '-', '0', 'bounce'],
    ['verify', 'unix', '-', '-', 'n', '-', '1', 'verify'],
    ['flush', 'unix', 'n', '-', 'n', '1000?', '0', 'flush'],
    ['proxymap', 'unix', '-', '-', 'n', '-', '-', 'proxymap'],
    ['proxywrite', 'unix', '-', '-', 'n', '-', '1', 'proxymap'],
    ['smtp', 'unix', '-', '-', 'n', '-', '-', 'smtp'],
    ['relay', 'unix', '-', '-', 'n', '-', '-', 'smtp'],
    ['showq', 'unix', 'n', '-', 'n', '-', '-', 'showq'],
    ['error', 'unix', '-', '-', 'n', '-', '-', 'error'],
    ['retry', 'unix', '-', '-', 'n', '-', '-', 'error'],
    ['discard', 'unix', '-', '-', 'n', '-', '-', 'discard'],
    ['local', 'unix', '-', 'n', 'n', '-', '-', 'local'],
    ['virtual', 'unix', '-', 'n', 'n', '-', '-', 'virtual'],
    ['lmtp', 'unix', '-', '-', 'n', '-', '-', 'lmtp'],
    ['anvil', 'unix', '-', '-', 'n', '-', '1', 'anvil'],
    ['scache', 'unix', '-', '-', 'n', '-', '1', 'scache'],
    ['postlog', 'unix-dgram', 'n', '-', 'n', '-', '1', 'postlogd'],
  ];
  return `# Generated by test/helpers/postfix.ts\n${rows.map((r) => r.join(' ')).join('\n')}\n`;
}

async function postfixAccount(): Promise<{ uid: number; gid: number }> {
  const passwd = await readFile('/etc/passwd', 'utf8');
  const fields = passwd
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === 'postfix');
  const uid = Number(fields?.[2]);
  const gid = Number(fields?.[3]);
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) {
    throw new Error('no postfix user in /etc/passwd: apt-get install postfix');
  }
  return { uid, gid };
}

/** A port free right now on 127.0.0.1 (small race with other binders; fine on a test machine). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not get a free port'));
      });
    });
  });
}

/** Resolves once a connection to the port gets a `220` greeting line. */
async function waitForBanner(port: number, timeoutMs: number, logText: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await new Promise<string>((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      let buffer = '';
      const done = (result: string): void => {
        socket.destroy();
        resolve(result);
      };
      socket.setTimeout(2_000, () => done('timeout'));
      socket.on('error', (err) => done(err.message));
      socket.on('data', (chunk: Buffer) => {
        buffer += chunk.toString('latin1');
        if (buffer.includes('\n')) {
          socket.end('QUIT\r\n');
          done(buffer);
        }
      });
    });
    if (last.startsWith('220')) return;
    await sleep(100);
  }
  throw new Error(`postfix on 127.0.0.1:${port} did not greet within ${timeoutMs} ms (last: ${last.trim()})\nmaillog:\n${tail(await logText())}`);
}

async function readLog(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch {
    return '';
  }
}

function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** Maildir names are `<seconds>.V<dev>I<inode>M<microseconds>.<host>`; order by time, then name. */
function maildirOrder(name: string): [number, number, string] {
  const m = /^(\d+)\.V[0-9a-f]+I[0-9a-f]+M(\d+)\./.exec(name);
  return m ? [Number(m[1]), Number(m[2]), name] : [Number.MAX_SAFE_INTEGER, 0, name];
}

/** Parses `/proc/PID/stat`: state, parent, process group, session (after the parenthesised name). */
async function procStat(pid: number): Promise<{ state: string; ppid: number; pgrp: number; session: number } | undefined> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '', ppid: Number(rest[1]), pgrp: Number(rest[2]), session: Number(rest[3]) };
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie still answers kill(0); where PID 1 does not reap (some containers) it never goes away.
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = text.slice(text.lastIndexOf(')') + 2).split(' ')[0] ?? '';
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/**
 * The instance's live processes: those in the master's session (the master calls setsid, its children
 * inherit it) or carrying `MAIL_CONFIG=<configDir>` in their environment (covers a master whose pid
 * file is gone).
 */
async function instanceProcesses(configDir: string, masterPid: number | undefined): Promise<number[]> {
  const found: number[] = [];
  const marker = `MAIL_CONFIG=${configDir}\0`;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const stat = await procStat(pid);
    if (stat === undefined || stat.state === 'Z' || stat.state === 'X') continue;
    if (masterPid !== undefined && (pid === masterPid || stat.session === masterPid || stat.ppid === masterPid)) {
      found.push(pid);
      continue;
    }
    try {
      const environ = await readFile(`/proc/${pid}/environ`, 'latin1');
      if (`${environ}\0`.includes(marker)) found.push(pid);
    } catch {
      // process exited or is not ours to read
    }
  }
  return found;
}

/** requireTool, plus root: the Postfix master must start as root. */
export function canRunPostfix(t: TestContext): boolean {
  if (!requireTool(t, 'postfix')) return false;
  if (process.getuid?.() !== 0) {
    if (inCI) throw new Error('Postfix tests need root in CI');
    t.skip('Postfix tests need root (the master must start as root)');
    return false;
  }
  return true;
}
