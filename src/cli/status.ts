/**
 * `smtp-tarpit status`: what a running proxy holds now, like `postfix status`
 * or a fullstatus page (issue 5 item 6). It asks the proxy's metrics listener
 * (`/metrics` and `/readyz`), so it works from any shell that can reach it and
 * sees what Prometheus sees: with workers, their sum.
 *
 * Exit codes: 0 reachable and ready; 1 reachable but not ready (the reason is
 * printed); 2 not reachable or not answering like smtp-tarpit (one line on
 * stderr), so scripts and monitoring checks can tell "down" from "degraded".
 */
import { createRequire } from 'node:module';
import { ConfigErrors } from '../config/config-error.js';
import { parseEndpoint } from '../config/endpoint.js';
import { loadConfigFile } from '../config/load.js';
import type { Endpoint } from '../config/schema.js';
import { STAGES, type Stage } from '../core/stage.js';

export interface StatusArgs {
  readonly config: string;
  /** HOST:PORT of the metrics listener; read from the configuration's `metrics.listen` when absent. */
  readonly metrics?: string | undefined;
  readonly json?: boolean | undefined;
  /** Milliseconds to wait for each answer. */
  readonly timeoutMs?: number | undefined;
}

const EXIT_READY = 0;
const EXIT_NOT_READY = 1;
const EXIT_UNREACHABLE = 2;

const DEFAULT_TIMEOUT_MS = 3000;
const VERDICT_ORDER = ['pass', 'tarpit', 'reject', 'drop'];
const CONNECTION_STATES = ['vetting', 'held', 'relaying'];
const POOL_STATES = ['idle', 'busy', 'connecting'];
const CAPS = ['held', 'per_client', 'per_group', 'memory'] as const;

type Counts = Record<string, number>;

export interface CapStatus {
  readonly cap: (typeof CAPS)[number];
  /** As configured; 0 = off. */
  readonly limit: number;
  /** How much of it is used now, where the proxy exports that (held clients, RSS bytes). */
  readonly used?: number | undefined;
  /** Clients refused at this cap since start. */
  readonly refused: number;
}

/** Everything `status` prints, as `--json` gives it. */
export interface Status {
  readonly url: string;
  readonly ready: boolean;
  readonly reason?: string | undefined;
  /** Open client connections by state (vetting, held, relaying). */
  readonly connections: Counts;
  /** Open sessions by path (held, relay) and stage. */
  readonly sessions: { readonly held: Counts; readonly relay: Counts };
  readonly heldByProfile: Counts;
  /** Hang-ups since start by stage: in all and by the session's verdict. */
  readonly hangups: { readonly total: number; readonly byStage: Record<string, { readonly total: number; readonly byVerdict: Counts }> };
  readonly backend: { readonly up: boolean | undefined; readonly pool: Counts; readonly poolSize: number | undefined };
  /** Undefined for a single process (no worker metrics). */
  readonly workers?: { readonly byState: Counts; readonly restarts: number } | undefined;
  /** The last policy load or reload; undefined when the proxy does not export it. */
  readonly policyReload?: { readonly at: string; readonly ok: boolean } | undefined;
  readonly caps: readonly CapStatus[];
}

export async function runStatus(args: StatusArgs): Promise<number> {
  let endpoint: Endpoint;
  try {
    endpoint = target(args);
  } catch (err) {
    console.error(`smtp-tarpit status: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_UNREACHABLE;
  }
  let status: Status;
  try {
    status = await readStatus(endpoint, args.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  } catch (err) {
    console.error(`smtp-tarpit status: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT_UNREACHABLE;
  }
  console.log(args.json ? JSON.stringify(status, null, 2) : renderStatus(status));
  if (!status.ready) console.error(`smtp-tarpit status: not ready: ${status.reason ?? 'no reason given'}`);
  return status.ready ? EXIT_READY : EXIT_NOT_READY;
}

/** `--metrics`, else the configuration's metrics.listen; a wildcard listener is asked on loopback. */
function target(args: StatusArgs): Endpoint {
  let endpoint: Endpoint | null;
  if (args.metrics !== undefined) {
    endpoint = parseEndpoint(args.metrics);
  } else {
    try {
      endpoint = loadConfigFile(args.config).metrics.listen;
    } catch (err) {
      if (!(err instanceof ConfigErrors)) throw err;
      throw new Error(`${err.errors.map((e) => e.message).join('; ')} (or name the listener with --metrics HOST:PORT)`, { cause: err });
    }
    if (endpoint === null) throw new Error(`${args.config} turns the metrics listener off (metrics.listen); status needs it`);
  }
  if (endpoint.host === '0.0.0.0') return { ...endpoint, host: '127.0.0.1' };
  if (endpoint.host === '::') return { ...endpoint, host: '::1' };
  return endpoint;
}

/** Reads /metrics and /readyz; throws one readable sentence when the listener cannot be reached or is not ours. */
export async function readStatus(endpoint: Endpoint, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Status> {
  const host = endpoint.host.includes(':') ? `[${endpoint.host}]` : endpoint.host;
  const base = `http://${host}:${endpoint.port}`;
  const [metrics, readyz] = await Promise.all([get(`${base}/metrics`, timeoutMs), get(`${base}/readyz`, timeoutMs)]);
  if (metrics.status !== 200) throw new Error(`${base}/metrics answered HTTP ${metrics.status}`);
  let families: Families;
  try {
    families = parseFamilies(metrics.body);
  } catch (err) {
    throw new Error(`${base}/metrics is not Prometheus text: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (!families.has('smtp_tarpit_connections_active')) throw new Error(`${base}/metrics has no smtp_tarpit_ metrics: is this smtp-tarpit's metrics listener?`);
  return summarise(base, families, readiness(readyz));
}

async function get(url: string, timeoutMs: number): Promise<{ status: number; body: string }> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return { status: res.status, body: await res.text() };
  } catch (err) {
    throw new Error(`cannot reach the metrics listener at ${url}: ${why(err, timeoutMs)}`, { cause: err });
  }
}

/** fetch's own message is "fetch failed": the reason is in its cause. */
function why(err: unknown, timeoutMs: number): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return `no answer within ${timeoutMs / 1000} s`;
  const cause = err instanceof Error ? err.cause : undefined;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

function readiness(res: { status: number; body: string }): { ready: boolean; reason: string | undefined } {
  let body: unknown;
  try {
    body = JSON.parse(res.body);
  } catch {
    body = undefined;
  }
  const reason = typeof body === 'object' && body !== null && 'reason' in body && typeof body.reason === 'string' ? body.reason : undefined;
  if (res.status === 200) return { ready: true, reason: undefined };
  return { ready: false, reason: reason ?? `/readyz answered HTTP ${res.status}` };
}

// ---- the exposition, read with a real parser ----

interface Sample {
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Counter and gauge families by name. */
type Families = Map<string, readonly Sample[]>;

interface RawFamily {
  name: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string> }>;
}

// CommonJS without type declarations. Version 1.1.1 folds the label sets of
// a labelled histogram together and drops their _sum and _count: status reads
// counters and gauges only and skips every histogram and summary.
const parsePrometheusText = createRequire(import.meta.url)('parse-prometheus-text-format') as (text: string) => RawFamily[];

function parseFamilies(text: string): Families {
  const out: Families = new Map();
  for (const f of parsePrometheusText(text)) {
    const type = f.type.toLowerCase();
    if (type !== 'counter' && type !== 'gauge') continue;
    out.set(
      f.name,
      f.metrics.map((m) => ({ labels: m.labels ?? {}, value: Number(m.value) })),
    );
  }
  return out;
}

/** Sum of a family's samples by one label; undefined when the family is absent. */
function byLabel(families: Families, name: string, label: string): Counts | undefined {
  const samples = families.get(name);
  if (samples === undefined) return undefined;
  const out: Counts = {};
  for (const s of samples) {
    const key = s.labels[label] ?? '';
    out[key] = (out[key] ?? 0) + s.value;
  }
  return out;
}

function total(families: Families, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const samples = families.get(name);
  if (samples === undefined || samples.length === 0) return undefined;
  let sum = 0;
  for (const s of samples) if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  return sum;
}

function withZeros(counts: Counts | undefined, keys: readonly string[]): Counts {
  const out: Counts = {};
  for (const k of keys) out[k] = counts?.[k] ?? 0;
  for (const [k, v] of Object.entries(counts ?? {})) out[k] ??= v;
  return out;
}

function summarise(url: string, families: Families, ready: { ready: boolean; reason: string | undefined }): Status {
  const stageOf = (path: string): Counts => {
    const out: Counts = {};
    for (const stage of STAGES) out[stage] = total(families, 'smtp_tarpit_sessions_stage', { path, stage }) ?? 0;
    return out;
  };

  const byStage: Record<string, { total: number; byVerdict: Counts }> = {};
  let hangupTotal = 0;
  for (const s of families.get('smtp_tarpit_hangups_total') ?? []) {
    // Every stage and verdict has a series from the start: only those with hang-ups are shown.
    if (s.value === 0) continue;
    const stage = s.labels.stage ?? '';
    const verdict = s.labels.verdict ?? '';
    const entry = (byStage[stage] ??= { total: 0, byVerdict: {} });
    entry.total += s.value;
    entry.byVerdict[verdict] = (entry.byVerdict[verdict] ?? 0) + s.value;
    hangupTotal += s.value;
  }

  const up = total(families, 'smtp_tarpit_backend_up');
  const workers = byLabel(families, 'smtp_tarpit_workers', 'state');
  const reloadAt = total(families, 'smtp_tarpit_policy_last_reload_timestamp_seconds');
  const reloadOk = total(families, 'smtp_tarpit_policy_last_reload_success');
  const limits = byLabel(families, 'smtp_tarpit_tarpit_cap', 'cap') ?? {};
  const refused = byLabel(families, 'smtp_tarpit_tarpit_refused_total', 'cap') ?? {};
  const connections = withZeros(byLabel(families, 'smtp_tarpit_connections_active', 'state'), CONNECTION_STATES);
  const used: Partial<Record<(typeof CAPS)[number], number>> = {
    held: connections.held,
    memory: total(families, 'smtp_tarpit_process_resident_memory_bytes'),
  };

  return {
    url,
    ready: ready.ready,
    reason: ready.reason,
    connections,
    sessions: { held: stageOf('held'), relay: stageOf('relay') },
    heldByProfile: byLabel(families, 'smtp_tarpit_held_by_profile', 'profile') ?? {},
    hangups: { total: hangupTotal, byStage },
    backend: {
      up: up === undefined ? undefined : up > 0,
      pool: withZeros(byLabel(families, 'smtp_tarpit_backend_pool_connections', 'state'), POOL_STATES),
      poolSize: total(families, 'smtp_tarpit_backend_pool_size'),
    },
    workers: workers === undefined ? undefined : { byState: workers, restarts: total(families, 'smtp_tarpit_worker_restarts_total') ?? 0 },
    policyReload: reloadAt === undefined || reloadAt === 0 ? undefined : { at: new Date(reloadAt * 1000).toISOString(), ok: reloadOk === 1 },
    caps: CAPS.filter((cap) => limits[cap] !== undefined).map((cap) => ({ cap, limit: limits[cap]!, used: used[cap], refused: refused[cap] ?? 0 })),
  };
}

// ---- the text page, within 80 columns ----

const LABEL_WIDTH = 16;

export function renderStatus(status: Status, now: Date = new Date()): string {
  const lines: string[] = [];
  const row = (label: string, text: string): number => lines.push(`${label.padEnd(LABEL_WIDTH)}${text}`);

  row('smtp-tarpit', `${status.url}: up, ${status.ready ? 'ready' : `NOT READY: ${status.reason ?? 'no reason given'}`}`);
  row('connections', CONNECTION_STATES.map((s) => `${s} ${n(status.connections[s] ?? 0)}`).join(', '));
  const profiles = Object.entries(status.heldByProfile)
    .filter(([, v]) => v > 0)
    .sort(([a, x], [b, y]) => y - x || a.localeCompare(b));
  row('held by profile', profiles.length === 0 ? 'none' : profiles.map(([p, v]) => `${p} ${n(v)}`).join(', '));
  const { up, pool, poolSize } = status.backend;
  const poolText = POOL_STATES.map((s) => `${n(pool[s] ?? 0)} ${s}`).join(', ') + (poolSize === undefined ? '' : ` (at most ${n(poolSize)})`);
  row('backend', `${up === undefined ? 'unknown' : up ? 'up' : 'DOWN'}; pool ${poolText}`);
  row('workers', workersText(status.workers));
  row('policy reload', reloadText(status.policyReload, now));

  lines.push('', 'sessions by stage: open now, and hang-ups since start (by final verdict)');
  const verdicts = verdictColumns(status);
  lines.push(table(['stage', 'held', 'relaying', 'hang-ups', ...verdicts], stageRows(status, verdicts)));

  if (status.caps.length > 0) {
    lines.push('', 'tarpit caps (0 = off; past a cap new suspicious clients get 421)');
    lines.push(table(['cap', 'limit', 'now', 'full', 'refused'], status.caps.map(capRow)));
  }
  return lines.join('\n');
}

function workersText(workers: Status['workers']): string {
  if (workers === undefined) return '1 (single process)';
  const states = Object.entries(workers.byState);
  const count = states.reduce((sum, [, v]) => sum + v, 0);
  return `${n(count)} (${states.map(([s, v]) => `${n(v)} ${s}`).join(', ')}); ${n(workers.restarts)} replaced since start`;
}

function reloadText(reload: Status['policyReload'], now: Date): string {
  if (reload === undefined) return 'unknown';
  const at = new Date(reload.at);
  const when = `${reload.at.slice(0, 19).replace('T', ' ')} UTC (${ago((now.getTime() - at.getTime()) / 1000)} ago)`;
  return reload.ok ? `ok, ${when}` : `FAILED, ${when}: the previous policy stays in force`;
}

function verdictColumns(status: Status): string[] {
  const seen = new Set<string>();
  for (const entry of Object.values(status.hangups.byStage)) for (const v of Object.keys(entry.byVerdict)) seen.add(v);
  return [...VERDICT_ORDER.filter((v) => seen.has(v)), ...[...seen].filter((v) => !VERDICT_ORDER.includes(v)).sort()];
}

function stageRows(status: Status, verdicts: readonly string[]): string[][] {
  const rows: string[][] = [];
  const stages: Stage[] = [...STAGES];
  for (const stage of stages) {
    const h = status.hangups.byStage[stage];
    rows.push([stage, n(status.sessions.held[stage] ?? 0), n(status.sessions.relay[stage] ?? 0), n(h?.total ?? 0), ...verdicts.map((v) => n(h?.byVerdict[v] ?? 0))]);
  }
  const sum = (c: Counts): number => Object.values(c).reduce((a, b) => a + b, 0);
  rows.push(['total', n(sum(status.sessions.held)), n(sum(status.sessions.relay)), n(status.hangups.total), ...verdicts.map((v) => n(Object.values(status.hangups.byStage).reduce((a, e) => a + (e.byVerdict[v] ?? 0), 0)))]);
  return rows;
}

function capRow(cap: CapStatus): string[] {
  const bytes = cap.cap === 'memory';
  const fmt = (v: number): string => (bytes ? mib(v) : n(v));
  const limit = cap.limit === 0 ? 'off' : fmt(cap.limit);
  const used = cap.used === undefined ? '-' : fmt(cap.used);
  const full = cap.used === undefined || cap.limit === 0 ? '-' : `${Math.round((100 * cap.used) / cap.limit)}%`;
  return [cap.cap.replace('_', ' '), limit, used, full, n(cap.refused)];
}

/** Left-aligned first column, right-aligned numbers, two spaces apart. */
function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    '  ' + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

function n(value: number): string {
  return Number.isInteger(value) ? value.toLocaleString('en-US') : value.toFixed(2);
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
}

function ago(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
