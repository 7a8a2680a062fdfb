/**
 * `npm run bench:verdict` (also the second half of `npm run bench`): what the
 * policy engine costs per connection (issue 3's benchmark). One run, about
 * 40 s; see bench/README.md for what each figure means.
 *
 * The policy: generated into a temp dir and loaded with the real loader: 3
 * DNSBL zones served by a real dnsmasq on loopback (test/helpers/dnsmasq.ts),
 * allow.cidr and block.cidr of 10,000 entries each (IPv4 and IPv6, 13 + 10
 * distinct prefix lengths), rdns weights on, first contact on. The engine is
 * compiled by tsc into a temp dir (what ships, bench/lib/build-dist.ts) and
 * runs in this process, called as the front door calls it:
 * `engine.vet(address, { needName: true, count: true })`.
 *
 *   1. warm: every DNS answer cached, so a vet is pure engine CPU (lists, rate
 *      window, allowlist cache, DNS cache, scoring, metrics); sequential.
 *   2. cold: empty cache, every lookup goes to dnsmasq; 50 vets at once, and
 *      one at a time (the DNS round trips a lone client waits for).
 *   3. CidrList.match per lookup at 100 to 100,000 entries, next to
 *      net.BlockList.check on the same lists.
 *
 * Exit status 1 and a FLAGGED line when a target is missed (warm vet above
 * 20 µs of CPU, list lookups above 1 µs that grew more than 3x from 1k to
 * 100k entries) or
 * anything came out wrong (a verdict's score, a DNS answer missing from the
 * warm cache, a lookup error, a list answer).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatIp, type Ip, type IpFamily } from '../src/core/ip.js';
import type { PolicyEngine, VetOptions } from '../src/policy/engine.js';
import type { CidrList } from '../src/policy/lists/cidr-list.js';
import { buildDist } from './lib/build-dist.js';
import { freshEngine, loadEngineDist, type EngineDist } from './lib/engine-dist.js';
import {
  ALLOW_SPACE,
  BLOCK_SPACE,
  CLEAN_SPACE,
  Rng,
  V4_PREFIXES,
  V6_PREFIXES,
  addressInside,
  generateEntries,
  groupKey,
  isV6,
  randomAddress,
  type GenEntry,
} from './lib/cidr-fixtures.js';
import { procStats } from './lib/procs.js';
import { cpuMicros, fmt, median, percentile, finishReport, printHeader, round, table } from './lib/report.js';
import { profile, type ProfileShare } from './lib/vet-profile.js';
import { startDnsmasq, type Dnsmasq } from '../test/helpers/dnsmasq.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The compiled engine modules (bench/lib/engine-dist.ts), loaded once in main(). */
let dist: EngineDist;

/** Clients vetted with every check (first contact); the other two paths get PATH_CLIENTS each. */
const MIXED_CLIENTS = 1000;
const PATH_CLIENTS = 200;
const LIST_ENTRIES = 10_000;
const WARM_REPEATS = 11;
const COLD_REPEATS = 3;
const COLD_CONCURRENCY = 50;
/** Clients per run vetted one at a time with an empty cache (each waits for its own round trips). */
const COLD_SEQUENTIAL_CLIENTS = 300;
const LIST_SIZES = [100, 1_000, 10_000, 100_000] as const;
const LIST_REPEATS = 5;
/** CPU µs per timed batch of list lookups. */
const LIST_BATCH_US = 40_000;
const LIST_PROBES = 1024; // a power of two: the timing loop masks its index
/** Targets (issue 3): warm vet CPU per connection, and list lookups that do not grow with the list. */
const TARGET_VET_US = 20;
const MAX_LIST_GROWTH = 3;
/**
 * Below this a lookup is a few cache misses: at 100,000 entries the ratio to
 * 1,000 then measures memory latency, not how the lookup scales, and swings
 * between 1x and 3x from run to run.
 */
const LIST_GROWTH_FLOOR_US = 1;

/** Profiled passes over the first contacts, and the sampling interval. */
const PROFILE_PASSES = 10;
const PROFILE_INTERVAL_US = 50;

const VET: VetOptions = { needName: true, count: true };
const SEED = 0x5eed_2026;

/** Score weights the generated policy gives; the expected score of each client is built from them. */
const ZONES = [
  { zone: 'bl1.bench', weight: 6, answers: ['127.0.0.2-127.0.0.11'], listedAnswer: '127.0.0.2', share: 0.1 },
  { zone: 'bl2.bench', weight: 3, answers: ['127.0.0.3'], listedAnswer: '127.0.0.3', share: 0.05 },
  { zone: 'bl3.bench', weight: 2, answers: ['127.0.0.0/24'], listedAnswer: '127.0.0.4', share: 0.03 },
] as const;
/** bl1 also answers this (an error code outside its filter) for some clients: must not count. */
const ERROR_CODE_SHARE = 0.02;
const BLOCK_WEIGHT = 5;
const RDNS_MISSING = 2;
const RDNS_UNCONFIRMED = 1;
/** Where every unconfirmed client's PTR name points instead of back at the client. */
const LIAR_ADDRESS = '192.0.2.99';
const DNS_TTL = 3600;

type Path = 'first-contact' | 'allow' | 'cached';
const PATH_LABEL: Record<Path, string> = {
  'first-contact': 'first contact, all checks',
  allow: 'allow.cidr hit',
  cached: 'allowlist cache hit',
};
type Rdns = 'confirmed' | 'unconfirmed' | 'missing';

interface Client {
  readonly index: number;
  readonly address: string;
  readonly ip: Ip;
  readonly path: Path;
  readonly block: boolean;
  /** bl1..bl3: listed (inside the filter). */
  readonly listed: readonly boolean[];
  /** bl1 answers an error code outside its filter. */
  readonly errorCode: boolean;
  readonly rdns: Rdns;
  readonly expectedScore: number;
}

// ── fixtures ───────────────────────────────────────────────────────────────

function makeClients(rng: Rng, block: readonly GenEntry[], allow: readonly GenEntry[]): Client[] {
  const groups = new Set<string>();
  const clients: Client[] = [];
  const byFamily = (list: readonly GenEntry[], family: IpFamily): GenEntry[] => list.filter((e) => e.ip.family === family);
  const pools = { block: { ipv4: byFamily(block, 'ipv4'), ipv6: byFamily(block, 'ipv6') }, allow: { ipv4: byFamily(allow, 'ipv4'), ipv6: byFamily(allow, 'ipv6') } };
  const plan: Path[] = [...Array<Path>(MIXED_CLIENTS).fill('first-contact'), ...Array<Path>(PATH_CLIENTS).fill('allow'), ...Array<Path>(PATH_CLIENTS).fill('cached')];
  plan.forEach((path, index) => {
    const family: IpFamily = isV6(index) ? 'ipv6' : 'ipv4';
    const inBlock = path === 'first-contact' && rng.next() < 0.2;
    let ip: Ip;
    // One client per /24 and /64: the rate check then sees each client alone, as most connections are.
    do {
      if (path === 'allow') ip = addressInside(pick(pools.allow[family], rng), rng);
      else if (inBlock) ip = addressInside(pick(pools.block[family], rng), rng);
      else ip = randomAddress(family, rng, CLEAN_SPACE);
    } while (groups.has(groupKey(ip)));
    groups.add(groupKey(ip));
    const listed = ZONES.map((z) => path === 'first-contact' && rng.next() < z.share);
    const errorCode = path === 'first-contact' && !listed[0] && rng.next() < ERROR_CODE_SHARE;
    const r = rng.next();
    const rdns: Rdns = r < 0.6 ? 'confirmed' : r < 0.8 ? 'unconfirmed' : 'missing';
    let expectedScore = 0;
    if (path === 'first-contact') {
      expectedScore += inBlock ? BLOCK_WEIGHT : 0;
      ZONES.forEach((z, i) => (expectedScore += listed[i] ? z.weight : 0));
      expectedScore += rdns === 'missing' ? RDNS_MISSING : rdns === 'unconfirmed' ? RDNS_UNCONFIRMED : 0;
    }
    clients.push({ index, address: formatIp(ip), ip, path, block: inBlock, listed, errorCode, rdns, expectedScore });
  });
  return clients;
}

function pick<T>(xs: readonly T[], rng: Rng): T {
  return xs[rng.int(0, xs.length - 1)] as T;
}

/**
 * RFC 5782 labels: reversed octets, or reversed nibbles for IPv6. Written here
 * on purpose rather than taken from src/policy/dns/query-name.ts: every
 * verdict's score is checked, so the engine's query names are checked against
 * these, for 1,400 addresses.
 */
function reversed(ip: Ip): string {
  if (ip.family === 'ipv4') return Array.from(ip.bytes).reverse().join('.');
  const nibbles: string[] = [];
  for (const b of ip.bytes) nibbles.push((b >> 4).toString(16), (b & 0x0f).toString(16));
  return nibbles.reverse().join('.');
}

function dnsmasqLines(clients: readonly Client[]): string[] {
  const lines = ['local=/bench/', 'local=/in-addr.arpa/', 'local=/ip6.arpa/', `host-record=liar.clients.bench,${LIAR_ADDRESS},${DNS_TTL}`];
  for (const c of clients) {
    const rev = reversed(c.ip);
    ZONES.forEach((z, i) => {
      if (c.listed[i]) lines.push(`host-record=${rev}.${z.zone},${z.listedAnswer},${DNS_TTL}`);
    });
    if (c.errorCode) lines.push(`host-record=${rev}.${ZONES[0].zone},127.255.255.254,${DNS_TTL}`);
    // host-record also serves the PTR of its address; each client gets its own name, so no lookup is shared.
    if (c.rdns === 'confirmed') lines.push(`host-record=h${c.index}.clients.bench,${c.address},${DNS_TTL}`);
    if (c.rdns === 'unconfirmed') {
      lines.push(`ptr-record=${rev}.${c.ip.family === 'ipv4' ? 'in-addr.arpa' : 'ip6.arpa'},u${c.index}.clients.bench`);
      lines.push(`host-record=u${c.index}.clients.bench,${LIAR_ADDRESS},${DNS_TTL}`);
    }
  }
  return lines;
}

function writePolicyDir(dir: string, block: readonly GenEntry[], allow: readonly GenEntry[]): void {
  const header = (what: string): string => `# verdict bench: ${LIST_ENTRIES} generated entries (${what}), IPv4 and IPv6\n`;
  writeFileSync(join(dir, 'block.cidr'), header('block') + block.map((e) => e.text).join('\n') + '\n');
  writeFileSync(join(dir, 'allow.cidr'), header('allow') + allow.map((e) => e.text).join('\n') + '\n');
  const zones = ZONES.map((z) => `  - { zone: ${z.zone}, weight: ${z.weight}, answers: [${z.answers.map((a) => JSON.stringify(a)).join(', ')}], timeout: 2 }`).join('\n');
  writeFileSync(
    join(dir, 'policy.yaml'),
    `# Generated by bench/verdict.ts; everything not named here is the shipped default.
verdicts: { tarpit: 3, reject: 8, drop: 15, rejectAt: rcpt }
lists:
  allow: allow.cidr
  block: { file: block.cidr, weight: ${BLOCK_WEIGHT} }
dnsbl:
${zones}
dnswl: []
rdns: { missing: ${RDNS_MISSING}, unconfirmed: ${RDNS_UNCONFIRMED} }
firstContact: { enabled: true, profile: first-contact }
tarpit: { profile: tarpit }
profiles:
  first-contact:
    delays: { banner: 12, helo: 12, mail: 12, rcpt: 12, data: 12 }
    end: allowlist
  tarpit:
    delays: { banner: 25, helo: 25, mail: 25, rcpt: 25, data: 25 }
    end: { reply: 451, text: "4.7.1 Service temporarily unavailable, try again later" }
`,
  );
}

// ── engine runs ────────────────────────────────────────────────────────────

async function dnsMisses(): Promise<number> {
  return (await dist.dnsCacheTotal.get()).values.find((v) => v.labels.result === 'miss')?.value ?? 0;
}


/** What came out wrong for `c`, or undefined. */
function wrong(c: Client, out: Awaited<ReturnType<PolicyEngine['vet']>>): string | undefined {
  const { session, report } = out;
  const score = session.summary().score;
  const errors = report.lookups.filter((l) => l.result === 'timeout' || l.result === 'error');
  if (errors.length > 0) return `${c.address}: ${errors.map((l) => `${l.zone} ${l.detail}`).join(', ')}`;
  if (c.path === 'allow' && !session.trusted) return `${c.address}: in allow.cidr but not trusted`;
  if (c.path === 'cached' && !report.cached) return `${c.address}: in the allowlist cache but not seen there`;
  if (c.path === 'first-contact' && !session.firstContact) return `${c.address}: not held as a first contact`;
  if (score !== c.expectedScore) return `${c.address} (${c.path}, block ${c.block}, listed ${c.listed.join('/')}, rdns ${c.rdns}): score ${score}, expected ${c.expectedScore}: ${session.summary().reasons.join('; ')}`;
  const name = session.clientName;
  if (c.rdns === 'confirmed' ? name !== `h${c.index}.clients.bench` : name !== '[UNAVAILABLE]') return `${c.address}: client name ${name} for rdns ${c.rdns}`;
  return undefined;
}

interface ConcurrentRun {
  readonly walls: number[];
  readonly seconds: number;
  readonly cpuUs: number;
  readonly problems: string[];
}

/** Every client vetted, `concurrency` at a time; each vet's wall time from its call to its answer. Results of clients `check` accepts are checked. */
async function vetConcurrently(engine: PolicyEngine, clients: readonly Client[], concurrency: number, check: (c: Client) => boolean = () => true): Promise<ConcurrentRun> {
  const walls = new Array<number>(clients.length);
  const problems: string[] = [];
  let next = 0;
  const cpu0 = cpuMicros();
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < clients.length) {
      const i = next++;
      const c = clients[i] as Client;
      const started = performance.now();
      const out = await engine.vet(c.address, VET);
      walls[i] = performance.now() - started;
      out.session.release();
      const problem = check(c) ? wrong(c, out) : undefined;
      if (problem) problems.push(problem);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { walls, seconds: (performance.now() - t0) / 1000, cpuUs: cpuMicros() - cpu0, problems };
}

interface WarmRun {
  readonly cpuUsPerVet: number;
  readonly walls: number[];
  readonly misses: number;
}

/** One client after another, every answer already cached: nothing but the engine's own work. */
async function vetSequentially(engine: PolicyEngine, clients: readonly Client[]): Promise<WarmRun> {
  const walls = new Array<number>(clients.length);
  const misses0 = await dnsMisses();
  const cpu0 = cpuMicros();
  for (let i = 0; i < clients.length; i++) {
    const started = performance.now();
    const { session } = await engine.vet((clients[i] as Client).address, VET);
    walls[i] = performance.now() - started;
    session.release();
  }
  const cpuUs = cpuMicros() - cpu0;
  return { cpuUsPerVet: cpuUs / clients.length, walls, misses: (await dnsMisses()) - misses0 };
}

interface WarmRow {
  readonly path: Path;
  readonly clients: number;
  readonly cpuUsPerVet: number[];
  readonly p50Us: number[];
  readonly p99Us: number[];
  misses: number;
}

interface ColdRow {
  readonly concurrency: number;
  readonly clients: number;
  readonly cpuUsPerVet: number;
  readonly dnsmasqCpuUsPerVet: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly vetsPerS: number;
  readonly queriesPerVet: number;
}

// ── list matching ──────────────────────────────────────────────────────────

/**
 * CPU µs per lookup over one batch of about `budgetUs`; chunks grow until each
 * takes ≥1 ms, so reading the clock costs nothing. `hits` counts true answers:
 * every timed answer is checked (and the lookups cannot be optimised away).
 */
function timeLookups(lookup: (address: string) => boolean, addresses: readonly string[], budgetUs: number): { us: number; n: number; hits: number } {
  const mask = addresses.length - 1;
  let idx = 0;
  let n = 0;
  let hits = 0;
  let chunk = 8;
  const start = cpuMicros();
  let elapsed = 0;
  while (elapsed < budgetUs) {
    const before = elapsed;
    for (let k = 0; k < chunk; k++) {
      if (lookup(addresses[idx] as string)) hits++;
      idx = (idx + 1) & mask;
    }
    n += chunk;
    elapsed = cpuMicros() - start;
    if (elapsed - before < 1000) chunk *= 2;
  }
  return { us: elapsed / n, n, hits };
}

type Probe = 'v4 hit' | 'v4 miss' | 'v6 hit' | 'v6 miss';
const PROBES: readonly Probe[] = ['v4 hit', 'v4 miss', 'v6 hit', 'v6 miss'];

interface ListRow {
  readonly entries: number;
  readonly compileMs: number;
  readonly blockListBuildMs: number;
  readonly cidr: Record<Probe, number>;
  readonly blockList: Record<Probe, number>;
}

function listScaling(flagged: string[]): ListRow[] {
  const rows: ListRow[] = [];
  for (const size of LIST_SIZES) {
    const rng = new Rng(SEED + size);
    const entries = generateEntries(size, rng, BLOCK_SPACE);
    let t = performance.now();
    const list: CidrList = dist.compileCidrList(
      entries.map((e, i) => ({ value: e.text, line: i + 1 })),
      `generated-${size}`,
    );
    const compileMs = performance.now() - t;
    t = performance.now();
    const blockList = new net.BlockList();
    for (const e of entries) blockList.addSubnet(formatIp(e.ip), e.prefix, e.ip.family);
    const blockListBuildMs = performance.now() - t;

    const probes = {} as Record<Probe, string[]>;
    for (const probe of PROBES) {
      const family: IpFamily = probe.startsWith('v4') ? 'ipv4' : 'ipv6';
      const pool = entries.filter((e) => e.ip.family === family);
      probes[probe] = Array.from({ length: LIST_PROBES }, () => formatIp(probe.endsWith('hit') ? addressInside(pick(pool, rng), rng) : randomAddress(family, rng, CLEAN_SPACE)));
    }
    const impls = {
      cidr: (a: string): boolean => list.has(a),
      blockList: (a: string): boolean => blockList.check(a, net.isIPv4(a) ? 'ipv4' : 'ipv6'),
    };
    const row: ListRow = { entries: size, compileMs, blockListBuildMs, cidr: {} as Record<Probe, number>, blockList: {} as Record<Probe, number> };
    for (const probe of PROBES) {
      const expected = probe.endsWith('hit');
      for (const [name, lookup] of Object.entries(impls) as [keyof typeof impls, (a: string) => boolean][]) {
        timeLookups(lookup, probes[probe], LIST_BATCH_US / 2); // warm-up
        const reps = Array.from({ length: LIST_REPEATS }, () => timeLookups(lookup, probes[probe], LIST_BATCH_US));
        const n = reps.reduce((a, r) => a + r.n, 0);
        const wrongAnswers = expected ? n - reps.reduce((a, r) => a + r.hits, 0) : reps.reduce((a, r) => a + r.hits, 0);
        if (wrongAnswers > 0) flagged.push(`${name} with ${size} entries answered ${!expected} for ${wrongAnswers} of ${n} ${probe} lookups`);
        row[name][probe] = median(reps.map((r) => r.us));
      }
    }
    rows.push(row);
    process.stdout.write(
      `  ${String(size).padStart(6)} entries: compiled in ${fmt(compileMs, 0)} ms; CidrList ${PROBES.map((p) => `${p} ${fmt(row.cidr[p], 2)}`).join(', ')} µs; BlockList ${PROBES.map((p) => `${p} ${fmt(row.blockList[p], 1)}`).join(', ')} µs\n`,
    );
  }
  return rows;
}

// ── main ───────────────────────────────────────────────────────────────────

async function main(): Promise<number> {
  const run = printHeader('verdict', ROOT);

  const flagged: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-verdict-'));
  onExit.push(() => rmSync(dir, { recursive: true, force: true }));
  let dns: Dnsmasq | undefined;
  let build: ReturnType<typeof buildDist> | undefined;
  const warmRows: WarmRow[] = [];
  const coldRows: ColdRow[] = [];
  let listRows: ListRow[] = [];
  let breakdown: ProfileShare[] = [];
  let loadMs = NaN;
  let dnsRecords = 0;
  try {
    // Measure what ships: the engine compiled by tsc, as `serve` runs it.
    const t0 = performance.now();
    const built = buildDist(ROOT);
    build = built;
    onExit.push(() => built.remove());
    if (build.problems) flagged.push(`tsc reported problems (figures are from what it emitted):\n${build.problems.slice(0, 2000)}`);
    dist = await loadEngineDist(build);
    console.log(`engine: src compiled by tsc (tsconfig.build.json) into ${build.dir} in ${fmt((performance.now() - t0) / 1000, 1)} s, loaded in this process`);
    const rng = new Rng(SEED);
    const block = generateEntries(LIST_ENTRIES, rng, BLOCK_SPACE);
    const allow = generateEntries(LIST_ENTRIES, rng, ALLOW_SPACE);
    const clients = makeClients(rng, block, allow);
    writePolicyDir(dir, block, allow);
    const lines = dnsmasqLines(clients);
    dnsRecords = lines.length;
    dns = await startDnsmasq({ lines, readyTimeoutMs: 10_000 });
    const config = dist.loadConfigText(`dns: { servers: ["${dns.address}"] }\n`, '(bench config)');
    const t = performance.now();
    const loaded = dist.loadPolicyDirWithWarnings(dir);
    loadMs = performance.now() - t;
    const policy = loaded.policy;
    const mixed = clients.filter((c) => c.path === 'first-contact');
    const v6 = clients.filter((c) => c.ip.family === 'ipv6').length;
    console.log(
      `policy: ${dir}: 3 DNSBL zones (${ZONES.map((z) => `${z.zone} +${z.weight}`).join(', ')}) on dnsmasq ${dns.address} (pid ${dns.pid}, ${dnsRecords} config lines), ` +
        `block.cidr and allow.cidr ${LIST_ENTRIES} entries each (${new Set(V4_PREFIXES).size} IPv4 and ${new Set(V6_PREFIXES).size} IPv6 prefix lengths, 30 % IPv6), rdns on, first contact on; ` +
        `loaded in ${fmt(loadMs, 0)} ms (${loaded.warnings.length} warnings)`,
    );
    console.log(
      `clients: ${clients.length} distinct addresses (${v6} IPv6), one per /24 and /64: ${mixed.length} first contacts (${mixed.filter((c) => c.block).length} in block.cidr, ` +
        `${ZONES.map((z, i) => `${mixed.filter((c) => c.listed[i]).length} on ${z.zone}`).join(', ')}, ${mixed.filter((c) => c.errorCode).length} answered an error code; ` +
        `rdns ${(['confirmed', 'unconfirmed', 'missing'] as const).map((r) => `${mixed.filter((c) => c.rdns === r).length} ${r}`).join(', ')}), ` +
        `${PATH_CLIENTS} in allow.cidr, ${PATH_CLIENTS} in the allowlist cache`,
    );

    // ── cold: empty cache, every lookup to dnsmasq ──
    const sequential = mixed.slice(0, COLD_SEQUENTIAL_CLIENTS);
    console.log(
      `\ncold: DNS cache empty, every lookup to dnsmasq; ${COLD_REPEATS} runs each of ${mixed.length} first contacts ${COLD_CONCURRENCY} at once and ${sequential.length} one at a time, ` +
        `interleaved, after one warm-up run (not reported); each run on a fresh state`,
    );
    // The first run ever also compiles the engine's code (JIT): a warm-up, on a state of its own.
    const warmUp = await vetConcurrently(freshEngine(dist, config, policy).engine, mixed, COLD_CONCURRENCY);
    for (const p of warmUp.problems.slice(0, 5)) flagged.push(`cold warm-up: ${p}`);
    for (let rep = 0; rep < COLD_REPEATS; rep++) {
      for (const [concurrency, set] of [[COLD_CONCURRENCY, mixed], [1, sequential]] as const) {
        const { engine } = freshEngine(dist, config, policy);
        const misses0 = await dnsMisses();
        const dnsCpu0 = procStats(dns.pid).cpuMs;
        const run = await vetConcurrently(engine, set, concurrency);
        const dnsCpuMs = procStats(dns.pid).cpuMs - dnsCpu0;
        const queries = (await dnsMisses()) - misses0;
        const label = `cold run ${rep + 1}, ${concurrency} at once`;
        for (const p of run.problems.slice(0, 5)) flagged.push(`${label}: ${p}`);
        if (run.problems.length > 5) flagged.push(`${label}: and ${run.problems.length - 5} more wrong verdicts`);
        const row: ColdRow = {
          concurrency,
          clients: set.length,
          cpuUsPerVet: run.cpuUs / set.length,
          dnsmasqCpuUsPerVet: (dnsCpuMs * 1000) / set.length,
          p50Ms: percentile(run.walls, 50),
          p99Ms: percentile(run.walls, 99),
          vetsPerS: set.length / run.seconds,
          queriesPerVet: queries / set.length,
        };
        coldRows.push(row);
        console.log(
          `  run ${rep + 1}, ${String(concurrency).padStart(2)} at once: wall p50 ${fmt(row.p50Ms, 2)} ms, p99 ${fmt(row.p99Ms, 2)} ms, ${fmt(row.vetsPerS, 0)} vets/s, CPU ${fmt(row.cpuUsPerVet, 0)} µs/vet (dnsmasq ${fmt(row.dnsmasqCpuUsPerVet, 0)}), ${fmt(row.queriesPerVet, 2)} DNS queries/vet${run.problems.length ? `, ${run.problems.length} WRONG` : ''}`,
        );
      }
    }

    // ── warm: every answer cached ──
    const { engine, state } = freshEngine(dist, config, policy);
    // The allowlist-cache clients are not in that cache yet: their answers are filled, not checked, here.
    const fill = await vetConcurrently(engine, clients, COLD_CONCURRENCY, (c) => c.path !== 'cached');
    for (const c of clients) if (c.path === 'cached') void state.store.allowlist({ client: c.address, reason: 'bench', ttl: policy.allowlistCache.ttl, deferred: false }, Date.now());
    const paths: Path[] = ['first-contact', 'allow', 'cached'];
    const byPath = new Map(paths.map((p) => [p, clients.filter((c) => c.path === p)] as const));
    const problems = [...fill.problems];
    for (const c of byPath.get('cached') ?? []) {
      const out = await engine.vet(c.address, VET);
      out.session.release();
      const p = wrong(c, out);
      if (p) problems.push(p);
    }
    for (const p of problems.slice(0, 5)) flagged.push(`warm fill: ${p}`);
    if (problems.length > 5) flagged.push(`warm fill: and ${problems.length - 5} more wrong verdicts`);
    console.log(`\nwarm: cache filled by one pass over all ${clients.length} clients (${fmt(fill.seconds, 2)} s); then ${WARM_REPEATS} runs, each path one client after another`);
    for (const p of paths) await vetSequentially(engine, byPath.get(p) ?? []); // JIT warm-up, not reported
    for (const p of paths) warmRows.push({ path: p, clients: byPath.get(p)?.length ?? 0, cpuUsPerVet: [], p50Us: [], p99Us: [], misses: 0 });
    for (let rep = 0; rep < WARM_REPEATS; rep++) {
      const parts: string[] = [];
      for (const row of warmRows) {
        const run = await vetSequentially(engine, byPath.get(row.path) ?? []);
        row.cpuUsPerVet.push(run.cpuUsPerVet);
        row.p50Us.push(percentile(run.walls, 50) * 1000);
        row.p99Us.push(percentile(run.walls, 99) * 1000);
        row.misses += run.misses;
        parts.push(`${row.path} ${fmt(run.cpuUsPerVet, 1)}`);
      }
      console.log(`  run ${rep + 1}: CPU µs/vet ${parts.join(', ')}`);
    }
    for (const row of warmRows) if (row.misses > 0) flagged.push(`warm ${row.path}: ${row.misses} DNS lookups missed the cache (expired or evicted): not a warm figure`);
    const firstContacts = byPath.get('first-contact') ?? [];
    const profDir = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
    breakdown = await profile(
      async () => {
        for (let i = 0; i < PROFILE_PASSES; i++) await vetSequentially(engine, firstContacts);
      },
      PROFILE_INTERVAL_US,
      profDir,
    );
    if (profDir) console.log(`  profile of ${PROFILE_PASSES} warm first-contact passes written to ${profDir}`);

    // ── list matching ──
    console.log(`\nlists: CidrList.has and net.BlockList.check, ${LIST_REPEATS} batches of ${LIST_BATCH_US / 1000} ms CPU each per cell`);
    listRows = listScaling(flagged);
  } catch (err) {
    flagged.push(`fatal: ${(err as Error).stack ?? String(err)}${dns ? `\ndnsmasq log:\n${dns.log().slice(-2000)}` : ''}`);
  } finally {
    await dns?.stop();
    build?.remove();
    rmSync(dir, { recursive: true, force: true });
  }

  // ── report ──
  const warm = warmRows.map((r) => ({ path: r.path, clients: r.clients, cpuUsPerVet: median(r.cpuUsPerVet), bestCpuUsPerVet: Math.min(...r.cpuUsPerVet), p50Us: median(r.p50Us), p99Us: median(r.p99Us), misses: r.misses }));
  const firstContact = warm.find((r) => r.path === 'first-contact');
  if (firstContact && firstContact.cpuUsPerVet > TARGET_VET_US) flagged.push(`warm vet CPU ${fmt(firstContact.cpuUsPerVet, 1)} µs per first contact, target ${TARGET_VET_US} µs`);
  const at = (n: number): ListRow | undefined => listRows.find((r) => r.entries === n);
  const growth = Object.fromEntries(PROBES.map((p) => [p, (at(100_000)?.cidr[p] ?? NaN) / (at(1_000)?.cidr[p] ?? NaN)])) as Record<Probe, number>;
  for (const p of PROBES) {
    const at100k = at(100_000)?.cidr[p] ?? NaN;
    if (growth[p] > MAX_LIST_GROWTH && !(at100k < LIST_GROWTH_FLOOR_US)) flagged.push(`CidrList ${p}: ${fmt(growth[p], 2)}x slower at 100,000 entries than at 1,000 (limit ${MAX_LIST_GROWTH}x above ${LIST_GROWTH_FLOOR_US} µs)`);
  }

  if (warm.length > 0) {
    console.log(`\nVerdict cost per connection, DNS cache warm (no DNS wait): engine.vet(address, {needName: true, count: true}), one after another, median of ${WARM_REPEATS} runs`);
    console.log(
      table([
        ['client', 'clients', 'CPU µs/vet', 'best run', 'wall p50 µs', 'wall p99 µs', 'DNS misses'],
        ...warm.map((r) => [PATH_LABEL[r.path], String(r.clients), fmt(r.cpuUsPerVet, 1), fmt(r.bestCpuUsPerVet, 1), fmt(r.p50Us, 1), fmt(r.p99Us, 1), String(r.misses)]),
      ]),
    );
  }
  if (breakdown.length > 0 && firstContact) {
    console.log(`\nWhere a warm first contact's CPU goes: V8 sampling profile (every ${PROFILE_INTERVAL_US} µs) of ${PROFILE_PASSES} more passes, shares applied to the ${fmt(firstContact.cpuUsPerVet, 1)} µs above`);
    console.log(table([['part', 'share', 'µs/vet'], ...breakdown.map((b) => [b.part, `${fmt(b.share * 100, 1)} %`, fmt(b.share * firstContact.cpuUsPerVet, 1)])]));
  }
  const cold = [COLD_CONCURRENCY, 1].flatMap((concurrency) => {
    const rows = coldRows.filter((r) => r.concurrency === concurrency);
    if (rows.length === 0) return [];
    const med = (f: (r: ColdRow) => number): number => median(rows.map(f));
    return [
      {
        concurrency,
        clients: rows[0]?.clients ?? 0,
        p50Ms: med((r) => r.p50Ms),
        p99Ms: med((r) => r.p99Ms),
        vetsPerS: med((r) => r.vetsPerS),
        cpuUsPerVet: med((r) => r.cpuUsPerVet),
        dnsmasqCpuUsPerVet: med((r) => r.dnsmasqCpuUsPerVet),
        queriesPerVet: med((r) => r.queriesPerVet),
      },
    ];
  });
  if (cold.length > 0) {
    console.log(`\nVerdict cost per connection, DNS cache empty: first contacts, every lookup to dnsmasq on loopback, median of ${COLD_REPEATS} runs`);
    console.log(
      table([
        ['at once', 'clients', 'wall p50 ms', 'wall p99 ms', 'vets/s', 'DNS queries/vet', 'CPU µs/vet (ours, c-ares included)', 'dnsmasq CPU µs/vet'],
        ...cold.map((c) => [String(c.concurrency), String(c.clients), fmt(c.p50Ms, 2), fmt(c.p99Ms, 2), fmt(c.vetsPerS, 0), fmt(c.queriesPerVet, 2), fmt(c.cpuUsPerVet, 0), fmt(c.dnsmasqCpuUsPerVet, 0)]),
      ]),
    );
  }
  if (listRows.length > 0) {
    console.log(`\nList lookup, CPU µs per address (median of ${LIST_REPEATS} batches); compile = compileCidrList, build = BlockList.addSubnet for every entry`);
    console.log(
      table([
        ['entries', 'compile ms', ...PROBES.map((p) => `CidrList ${p}`), 'build ms', ...PROBES.map((p) => `BlockList ${p}`)],
        ...listRows.map((r) => [String(r.entries), fmt(r.compileMs, 1), ...PROBES.map((p) => fmt(r.cidr[p], 2)), fmt(r.blockListBuildMs, 1), ...PROBES.map((p) => fmt(r.blockList[p], r.blockList[p] < 10 ? 2 : 0))]),
        ['100k / 1k', '', ...PROBES.map((p) => `${fmt(growth[p], 2)}x`), '', ...PROBES.map((p) => `${fmt((at(100_000)?.blockList[p] ?? NaN) / (at(1_000)?.blockList[p] ?? NaN), 0)}x`)],
      ]),
    );
  }
  const figures = {
    policy: { dnsblZones: ZONES.length, listEntries: { allow: LIST_ENTRIES, block: LIST_ENTRIES }, loadMs: round(loadMs, 1), dnsmasqConfigLines: dnsRecords },
    targets: { warmVetCpuUs: TARGET_VET_US, maxListGrowth1kTo100k: MAX_LIST_GROWTH },
    warm: warm.map((r) => ({ path: r.path, clients: r.clients, cpuUsPerVet: round(r.cpuUsPerVet, 2), bestRunCpuUsPerVet: round(r.bestCpuUsPerVet, 2), wallP50Us: round(r.p50Us, 2), wallP99Us: round(r.p99Us, 2), dnsMisses: r.misses })),
    warmFirstContactProfile: breakdown.map((b) => ({ part: b.part, share: round(b.share, 3), usPerVet: round(b.share * (firstContact?.cpuUsPerVet ?? NaN), 2) })),
    cold: cold.map((c) => ({
      concurrency: c.concurrency,
      clients: c.clients,
      wallP50Ms: round(c.p50Ms, 3),
      wallP99Ms: round(c.p99Ms, 3),
      vetsPerS: round(c.vetsPerS, 0),
      dnsQueriesPerVet: round(c.queriesPerVet, 2),
      cpuUsPerVet: round(c.cpuUsPerVet, 1),
      dnsmasqCpuUsPerVet: round(c.dnsmasqCpuUsPerVet, 1),
    })),
    lists: listRows.map((r) => ({
      entries: r.entries,
      compileMs: round(r.compileMs, 1),
      cidrListUs: Object.fromEntries(PROBES.map((p) => [p, round(r.cidr[p], 3)])),
      blockListBuildMs: round(r.blockListBuildMs, 1),
      blockListUs: Object.fromEntries(PROBES.map((p) => [p, round(r.blockList[p], 3)])),
    })),
    cidrListGrowth1kTo100k: Object.fromEntries(PROBES.map((p) => [p, round(growth[p], 2)])),
  };
  return finishReport(run, figures, flagged);
}

/** Temp dirs to remove however the bench ends (test/helpers/dnsmasq.ts kills its dnsmasq on exit by itself). */
const onExit: (() => void)[] = [];
process.once('exit', () => {
  for (const f of onExit) f();
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping`);
    process.exit(130);
  });
}
process.exitCode = await main();
