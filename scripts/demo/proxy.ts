/**
 * The real proxy for the demo, as its own process (`node --import tsx
 * src/cli/main.ts serve`), with the shipped configuration and policy changed
 * only where a demo must: loopback ports instead of 25 and 9325, the demo
 * backend, delays and retry pause short enough to watch in a minute, and the
 * demo's own block and known-sender lists. Everything it is
 * given (configuration, policy directory, log) is written to one temp dir the
 * demo leaves behind for the reader to open.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, openSync, readFileSync, writeFileSync, closeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { parseDocument } from 'yaml';

/** Seconds before each reply in the two holds (the shipped policy's are in `Shipped`). */
export const FIRST_CONTACT_DELAY = 2;
export const TARPIT_DELAY = 3;
/** Seconds after its 451 before a survivor's retry is relayed (firstContact.minRetryDelay). */
export const MIN_RETRY_DELAY = 10;

/** The shipped policy's values for what the demo scales down, read from it so the header never quotes stale ones. */
export interface Shipped {
  readonly firstContactDelay: number;
  readonly tarpitDelay: number;
  readonly minRetryDelay: number;
}

export interface DemoFiles {
  readonly config: string;
  readonly policies: string;
  readonly log: string;
  readonly shipped: Shipped;
}

/** Networks for the policy's two list files the demo writes. */
export interface DemoLists {
  /** block.cidr: how an admin says "always suspicious"; the bots come from there, and it sends them to the tarpit. */
  readonly blocked: readonly string[];
  /** known-senders.cidr: a big sender's pool, as `smtp-tarpit allowlist spf` writes it from SPF records. */
  readonly known: readonly string[];
}

/** Writes the configuration and policy directory into `dir`. */
export function writeDemoFiles(root: string, dir: string, ports: { listen: number; backend: number; metrics: number }, lists: DemoLists): DemoFiles {
  const policies = join(dir, 'policies');
  mkdirSync(policies, { recursive: true });

  const policy = parseDocument(readFileSync(join(root, 'policies/policy.yaml'), 'utf8'));
  const shipped: Shipped = {
    firstContactDelay: Number(policy.getIn(['profiles', 'first-contact', 'delays', 'banner'])),
    tarpitDelay: Number(policy.getIn(['profiles', 'tarpit', 'delays', 'banner'])),
    minRetryDelay: Number(policy.getIn(['firstContact', 'minRetryDelay'])),
  };
  const stages = (seconds: number) => ({ banner: seconds, helo: seconds, mail: seconds, rcpt: seconds, data: seconds });
  policy.setIn(['profiles', 'first-contact', 'delays'], stages(FIRST_CONTACT_DELAY));
  policy.setIn(['profiles', 'tarpit', 'delays'], stages(TARPIT_DELAY));
  policy.setIn(['firstContact', 'minRetryDelay'], MIN_RETRY_DELAY);
  writeFileSync(join(policies, 'policy.yaml'), policy.toString());
  copyFileSync(join(root, 'policies/policy.schema.json'), join(policies, 'policy.schema.json'));
  copyFileSync(join(root, 'policies/allow.cidr'), join(policies, 'allow.cidr'));
  writeFileSync(join(policies, 'block.cidr'), ['# the demo\'s bots', ...lists.blocked, ''].join('\n'));
  // The demo has no DNS server to walk SPF records from: the list is written as the walk would have found it.
  const known = ['# Known senders: as `smtp-tarpit allowlist spf bigsender.example` writes them from SPF', '', '# bigsender.example', ...lists.known, ''];
  writeFileSync(join(policies, 'known-senders.cidr'), known.join('\n'));

  const config = parseDocument(readFileSync(join(root, 'config/smtp-tarpit.yaml'), 'utf8'));
  config.set('listen', `127.0.0.1:${ports.listen}`);
  config.setIn(['backend', 'address'], `127.0.0.1:${ports.backend}`);
  config.setIn(['metrics', 'listen'], `127.0.0.1:${ports.metrics}`);
  config.set('policies', policies);
  // On loopback as whoever runs it: no switch to the shipped `user` (it could not read this temp dir).
  config.delete('user');
  config.delete('group');
  const configFile = join(dir, 'smtp-tarpit.yaml');
  writeFileSync(configFile, config.toString());
  return { config: configFile, policies, log: join(dir, 'smtp-tarpit.log'), shipped };
}

export interface RunningProxy {
  readonly metricsUrl: string;
  /** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `serve` with its stdout (one JSON line per session) in files.log; ready once /readyz says 200. */
export async function startProxy(root: string, files: DemoFiles, metricsPort: number): Promise<RunningProxy> {
  const log = openSync(files.log, 'w');
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'serve', '--config', files.config], {
    cwd: root,
    stdio: ['ignore', log, 'pipe'],
  });
  closeSync(log);
  process.once('exit', () => child.kill('SIGKILL')); // last resort, should the demo itself crash
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const metricsUrl = `http://127.0.0.1:${metricsPort}`;
  const stop = async (): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
    child.kill('SIGTERM');
    const kill = setTimeout(() => child.kill('SIGKILL'), 5000);
    const code = await exited;
    clearTimeout(kill);
    return code;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the proxy exited (${child.exitCode}) before it was ready:\n${stderr}${readFileSync(files.log, 'utf8')}`);
    const ready = await fetch(`${metricsUrl}/readyz`).then((r) => r.status === 200, () => false);
    if (ready) return { metricsUrl, stop };
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the proxy was not ready within 30 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** One scrape of /metrics: `sum(name, labels)` adds every sample whose labels include `labels`. */
export interface Metrics {
  sum(name: string, labels?: Readonly<Record<string, string>>): number;
  /** The distinct values of `label` among the samples named `name`. */
  values(name: string, label: string): string[];
}

export async function scrape(metricsUrl: string): Promise<Metrics> {
  const res = await fetch(`${metricsUrl}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  // Sample lines of the text exposition format: name{label="value",...} number
  const samples = (await res.text())
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const m = /^(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
      const labels: Record<string, string> = {};
      for (const [, key = '', value = ''] of (m?.[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[key] = value;
      return { name: m?.[1] ?? '', labels, value: Number(m?.[3]) };
    });
  const matching = (name: string, labels: Readonly<Record<string, string>> = {}) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  return {
    sum: (name, labels) => matching(name, labels).reduce((total, s) => total + s.value, 0),
    values: (name, label) => [...new Set(matching(name).map((s) => s.labels[label] ?? ''))],
  };
}
