/**
 * Summarises a V8 `.cpuprofile` (node --cpu-prof) by who the time belongs to:
 * smtp-server, our src/relay, our src/smtp, the rest of ours, nodemailer,
 * prom-client, pino, node internals, native bindings, GC.
 *
 * Two views, both as a share of the non-idle samples and as µs per message:
 *  - self: where the CPU was when sampled (a native `writeUtf8String` is
 *    "native", wherever it was called from);
 *  - owner: the nearest frame up the stack that belongs to a package or to our
 *    code (a socket write from smtp-server's reply code counts as smtp-server's,
 *    one from src/relay as ours); "runtime only" when no such frame exists
 *    (event loop, libuv reads, socket close/accept plumbing, GC).
 *
 *   node --import tsx bench/lib/floor-profile.ts <file.cpuprofile> [messages]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const OWNERS: ReadonlyArray<[RegExp, string]> = [
  [/\/node_modules\/smtp-server\//, 'smtp-server'],
  [/\/node_modules\/nodemailer\//, 'nodemailer (dot-stuffer)'],
  [/\/node_modules\/prom-client\//, 'prom-client'],
  [/\/node_modules\/(pino|sonic-boom|thread-stream|pino-std-serializers)/, 'pino'],
  [/\/node_modules\//, 'other packages'],
  [/\/(dist|src)\/relay\//, 'ours: src/relay'],
  [/\/(dist|src)\/smtp\//, 'ours: src/smtp'],
  [/\/(dist|src)\/(trap|metrics|core|config|cli|policy)\//, 'ours: trap/metrics/core/cli'],
  [/\/bench\/lib\/floor-server/, 'floor-server (bench)'],
];

function owner(url: string): string | undefined {
  for (const [re, name] of OWNERS) if (re.test(url)) return name;
  return undefined;
}

function selfCategory(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (functionName === '(idle)') return '(idle)';
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return '(program): VM/native outside JS, incl. libuv reads';
  if (url === '') return `native: ${functionName || '(anonymous)'}`;
  const o = owner(url);
  if (o) return o;
  if (url.startsWith('node:')) {
    if (/node:(net|internal\/stream_base_commons|internal\/net)/.test(url)) return 'node internals: net';
    if (/node:internal\/streams\/|node:stream/.test(url)) return 'node internals: streams';
    if (/node:events|node:internal\/events/.test(url)) return 'node internals: events';
    if (/timers/.test(url)) return 'node internals: timers';
    if (/process\/task_queues|async_hooks|promise/.test(url)) return 'node internals: promises/ticks';
    return 'node internals: other';
  }
  return `other: ${url}`;
}

export function summarise(profile: CpuProfile, messages?: number, top = 25): string {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  // Time of sample i: the delta to the next sample (what Chrome DevTools does).
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i + 1] ?? 0;
    const id = profile.samples[i] as number;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const ownerOf = (id: number): string => {
    const n = byId.get(id) as ProfileNode;
    const f = n.callFrame.functionName;
    if (f === '(garbage collector)') return 'GC';
    if (f === '(program)') return 'runtime only';
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const o = owner((byId.get(cur) as ProfileNode).callFrame.url);
      if (o) return o;
    }
    return 'runtime only';
  };
  const selfCat = new Map<string, number>();
  const ownerCat = new Map<string, number>();
  const fn = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  for (const [id, us] of self) {
    const n = byId.get(id) as ProfileNode;
    const cat = selfCategory(n.callFrame);
    if (cat === '(idle)') {
      idle += us;
      continue;
    }
    busy += us;
    selfCat.set(cat, (selfCat.get(cat) ?? 0) + us);
    const o = ownerOf(id);
    ownerCat.set(o, (ownerCat.get(o) ?? 0) + us);
    const f = n.callFrame;
    const where = f.url ? `${f.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/(dist|src|bench)\//, '$1/')}:${f.lineNumber + 1}` : '(native)';
    const key = `${f.functionName || '(anonymous)'} ${where} [${ownerOf(id)}]`;
    fn.set(key, (fn.get(key) ?? 0) + us);
  }
  // Native self time also grouped by owner, to see whose writes/connects they are.
  const nativeByOwner = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id) as ProfileNode;
    if (n.callFrame.url !== '' || n.callFrame.functionName.startsWith('(')) continue;
    const key = `${n.callFrame.functionName} ← ${ownerOf(id)}`;
    nativeByOwner.set(key, (nativeByOwner.get(key) ?? 0) + us);
  }
  const pct = (us: number): string => `${((us / busy) * 100).toFixed(1).padStart(5)} %`;
  const per = (us: number): string => (messages ? `${(us / messages).toFixed(1).padStart(7)} µs/msg` : '');
  const list = (m: Map<string, number>, limit = Infinity): string =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, limit)
      .map(([k, us]) => `  ${pct(us)}  ${per(us)}  ${k}`)
      .join('\n');
  const wall = profile.endTime - profile.startTime;
  return [
    `profile: ${(wall / 1e6).toFixed(1)} s sampled, non-idle ${(busy / 1e6).toFixed(2)} s (${((busy / wall) * 100).toFixed(0)} %)${messages ? `, ${messages} messages → ${(busy / messages).toFixed(0)} µs/msg of main-thread CPU` : ''}`,
    'owner (nearest package/our frame up the stack):',
    list(ownerCat),
    'self (where the sample landed):',
    list(selfCat, 20),
    'native bindings by owner:',
    list(nativeByOwner, 15),
    `top ${top} functions by self time [owner]:`,
    list(fn, top),
    `(idle ${(idle / 1e6).toFixed(2)} s not counted)`,
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [file, messages] = process.argv.slice(2);
  if (!file) {
    console.error('usage: floor-profile.ts <file.cpuprofile> [messages]');
    process.exit(2);
  }
  console.log(summarise(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, messages ? Number(messages) : undefined));
}
