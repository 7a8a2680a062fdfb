/**
 * `npm run bench:heap`: where the heap of a held connection goes. The proxy
 * runs as it ships (bench/lib/build-dist.ts) with bench/hold.ts's policy
 * (every 127.x.y.z client but 127.0.0.1 held 300 s before its banner) and
 * `--heapsnapshot-signal=SIGUSR2`; a separate client process
 * (bench/lib/hold-client.ts) opens N silent connections. One heap snapshot
 * before the load and one with N held (each snapshot runs a full GC first,
 * so it shows live objects only); the difference, by node type and
 * constructor name, divided by the connections held, is what one held
 * client keeps alive. RSS is not reported here: taking a snapshot inflates
 * it (bench/hold.ts measures RSS).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { benchPolicies } from './lib/bench-policies.js';
import { buildDist } from './lib/build-dist.js';
import { blockAllLoopbackBut, holdPolicy } from './lib/hold-policy.js';
import { freePort, runBench, sleep, startProxy, startSink, stopAll } from './lib/procs.js';
import { finishReport, fmt, printHeader, round, table } from './lib/report.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const N = Number(process.env.BENCH_HEAP_N ?? 5_000);
const RATE = 2_000;
const ROWS = 25;

interface HeapSnapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: string[]; readonly node_types: [string[], ...unknown[]] } };
  readonly nodes: number[];
  readonly strings: string[];
}

/** Self size and count per `type:name` (strings and code pooled under one name each). */
function byConstructor(file: string): { readonly sizes: Map<string, { count: number; bytes: number }>; readonly total: number } {
  const s = JSON.parse(readFileSync(file, 'utf8')) as HeapSnapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const width = fields.length;
  const [iType, iName, iSize] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const sizes = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + iType]!] ?? '?';
    const name = type.includes('string') ? '(string)' : type === 'code' ? '(code)' : (s.strings[s.nodes[i + iName]!] ?? '').slice(0, 60);
    const key = `${type}:${name}`;
    const entry = sizes.get(key) ?? { count: 0, bytes: 0 };
    entry.count++;
    entry.bytes += s.nodes[i + iSize]!;
    sizes.set(key, entry);
    total += s.nodes[i + iSize]!;
  }
  return { sizes, total };
}

async function snapshot(pid: number, dir: string, index: number): Promise<string> {
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 60_000;
  for (;;) {
    // Node writes Heap.<date>.<time>.<pid>.0.<seq>.heapsnapshot; wait until the file is complete (parses).
    const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).sort();
    if (files.length >= index) {
      const file = join(dir, files[index - 1]!);
      try {
        JSON.parse(readFileSync(file, 'utf8'));
        return file;
      } catch {
        // still being written
      }
    }
    if (Date.now() > deadline) throw new Error('no heap snapshot within 60 s');
    await sleep(500);
  }
}

async function main(): Promise<number> {
  const run = printHeader('heap', ROOT);
  const flagged: string[] = [];
  const figures: Record<string, unknown> = { n: N };
  const build = buildDist(ROOT);
  const dir = mkdtempSync(join(tmpdir(), 'smtp-tarpit-heap-'));
  const snaps = join(dir, 'snapshots');
  mkdirSync(snaps);
  try {
    if (build.problems) throw new Error(`tsc reported problems:\n${build.problems.slice(0, 2000)}`);
    const sink = await startSink(ROOT, dir);
    const policies = benchPolicies(join(dir, 'hold'));
    holdPolicy(policies, { delay: 300, stutter: 0 });
    blockAllLoopbackBut(policies, '127.0.0.1');
    const port = await freePort();
    const metrics = await freePort();
    const config = {
      listen: `127.0.0.1:${port}`,
      hostname: 'tarpit.bench',
      policies,
      backend: { address: `127.0.0.1:${sink.port}`, poolSize: 8, warm: 2 },
      limits: { maxConnections: 30_000, maxConnectionsPerClient: 1000 },
      tarpit: { maxHeld: 25_000, maxHeldPerClient: 1000, maxHeldPerGroup: 1000 },
      smtp: { reverseLookup: false },
      metrics: { listen: `127.0.0.1:${metrics}` },
      log: { level: 'warn' },
    };
    const file = join(dir, 'heap.yaml');
    writeFileSync(file, stringify(config));
    const proxy = await startProxy(build.dir, file, port, ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${snaps}`]);
    await sleep(2000);
    const before = await snapshot(proxy.pid, snaps, 1);
    const client = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'bench/lib/hold-client.ts'), JSON.stringify({ host: '127.0.0.1', port, count: N, rate: RATE, base: 2 })], {
      stdio: ['pipe', 'ignore', 'inherit'],
    });
    try {
      await sleep((N / RATE) * 1000 + 5000);
      const text = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
      const held = Number(/^smtp_tarpit_connections_active\{state="held"\} (\d+)$/m.exec(text)?.[1] ?? 0);
      if (held < N) flagged.push(`held ${held} of ${N}`);
      const after = await snapshot(proxy.pid, snaps, 2);
      const a = byConstructor(before);
      const b = byConstructor(after);
      const rows = [...b.sizes].map(([key, e]) => {
        const p = a.sizes.get(key) ?? { count: 0, bytes: 0 };
        return { key, count: (e.count - p.count) / held, bytes: (e.bytes - p.bytes) / held };
      });
      rows.sort((x, y) => y.bytes - x.bytes);
      const perHeld = (b.total - a.total) / held;
      console.log(`\nLive heap per held connection (${held} held, snapshot difference): ${fmt(perHeld, 0)} bytes`);
      console.log(table([['bytes/held', 'objects/held', 'type:constructor'], ...rows.slice(0, ROWS).map((r) => [fmt(r.bytes, 1), fmt(r.count, 2), r.key])]));
      figures.held = held;
      figures.heapBytesPerHeld = round(perHeld, 0);
      figures.top = rows.slice(0, ROWS).map((r) => ({ key: r.key, bytes: round(r.bytes, 1), count: round(r.count, 2) }));
    } finally {
      client.stdin?.end();
      await proxy.stop();
    }
  } catch (err) {
    flagged.push((err as Error).stack ?? String(err));
  } finally {
    await stopAll();
    build.remove();
    rmSync(dir, { recursive: true, force: true });
  }
  return finishReport(run, figures, flagged);
}

await runBench(main);
