/**
 * Where a vet's CPU goes: a sampled V8 profile (node:inspector, in this
 * process) of warm vets, each sample charged to the part of the engine it was
 * in. Run after the measured passes, so the profiler's own cost never touches
 * the reported figures; the shares are then applied to the measured CPU.
 *
 * A sample belongs to metrics when any frame is prom-client's (counters are
 * bumped from everywhere: the engine, the DNS cache, the allowlist cache);
 * otherwise to the outermost frame, from the stack's root, in one of the files
 * below (so an address parse or an lru-cache get counts for the check that
 * asked for it), and to the engine itself when only engine.ts matched. After
 * an `await`, V8 resumes a function without its callers on the stack, so
 * attributing by caller (below `vet`) would lose those samples; attributing by
 * file does not.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
}
interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}
interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
}

/** [file pattern, part]: tried on each frame from the root down; the first frame that matches decides. */
const PARTS: readonly (readonly [RegExp, string])[] = [
  [/\/(src|dist)\/policy\/(checks\/lists|lists\/cidr-list)\.[jt]s/, 'allow.cidr + block.cidr (CidrList.match)'],
  [/\/(src|dist)\/policy\/checks\/dns-zones\.[jt]s/, 'DNSBL, 3 zones (query names, cache, answer filters)'],
  [/\/(src|dist)\/policy\/(checks\/rdns|dns\/fcrdns)\.[jt]s/, 'rDNS + FCrDNS (PTR, forward A/AAAA, cached)'],
  [/\/(src|dist)\/state\/(client-group|rate-limiter)\.[jt]s|\/(src|dist)\/policy\/checks\/rate\.[jt]s/, 'rate (client group key, minute window)'],
  [/\/(src|dist)\/state\/allowlist-cache\.[jt]s/, 'allowlist cache lookup'],
  [/\/(src|dist)\/state\/reputation-memory\.[jt]s|\/(src|dist)\/policy\/checks\/reputation\.[jt]s/, 'reputation (decayed counts)'],
  [/\/(src|dist)\/policy\/(session-policy|score)\.[jt]s/, 'session and score'],
];
const ENGINE = /\/(src|dist)\/policy\/engine\.[jt]s/;
const METRICS = /\/node_modules\/prom-client\//;

export interface ProfileShare {
  readonly part: string;
  /** Share of the profiled vets' samples (GC included), 0..1. */
  readonly share: number;
}

/** Profiles `run` with V8's sampling profiler (`intervalUs` between samples); the profile is written to `saveDir` when given. */
export async function profile(run: () => Promise<void>, intervalUs: number, saveDir?: string): Promise<ProfileShare[]> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
    await session.post('Profiler.start');
    await run();
    const { profile: result } = (await session.post('Profiler.stop')) as { profile: CpuProfile };
    if (saveDir) writeFileSync(join(saveDir, `verdict-warm-${Date.now()}.cpuprofile`), JSON.stringify(result));
    return shares(result);
  } finally {
    session.disconnect();
  }
}

function shares(p: CpuProfile): ProfileShare[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const counts = new Map<string, number>();
  let total = 0;
  for (const id of p.samples) {
    const stack: CallFrame[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const node = byId.get(cur);
      if (node) stack.push(node.callFrame);
    }
    stack.reverse(); // root first
    const leaf = stack[stack.length - 1]?.functionName ?? '';
    // The profiler's own start and stop, and nothing running.
    if (leaf === '(idle)' || leaf === '(program)' || stack.some((f) => f.url.includes('inspector'))) continue;
    let part: string | undefined;
    if (leaf === '(garbage collector)') part = 'garbage collection';
    else if (stack.some((f) => METRICS.test(f.url))) part = 'metrics (prom-client counters)';
    else {
      for (const frame of stack) {
        part = PARTS.find(([re]) => re.test(frame.url))?.[1];
        if (part) break;
      }
    }
    if (!part && stack.some((f) => ENGINE.test(f.url))) part = 'engine: vet itself (awaits, Promise.all, evidence)';
    part ??= 'other (promise machinery, the bench loop)';
    counts.set(part, (counts.get(part) ?? 0) + 1);
    total++;
  }
  return [...counts].map(([part, n]) => ({ part, share: n / total })).sort((a, b) => b.share - a.share);
}
