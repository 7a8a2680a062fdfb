/**
 * `smtp-tarpit explain`: what the policy would do with a client, and why
 * (docs/design.md §5: every rule can be tried before it goes live). It runs the real
 * connect-stage checks, DNS included, through the resolver the configuration
 * names, then the HELO check, and prints each check's evidence, the score,
 * the verdict and what the client would meet at each stage.
 *
 * It runs in its own process: with the memory store it does not see the
 * running proxy's memory (allowlist cache, rate windows, reputation,
 * greylist are empty here); given a shared store it reads the fleet's. Either
 * way it only looks: `count` is off, so explaining never counts as a
 * connection, and the greylist is peeked at, never updated.
 */
import { isIP } from 'node:net';
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile } from '../config/load.js';
import type { Config } from '../config/schema.js';
import type { Stage } from '../core/stage.js';
import { toWire } from '../core/reply.js';
import { survivorReply } from '../tarpit/tarpit.js';
import { stageDelay } from '../tarpit/hold-clock.js';
import type { ZoneLookup } from '../policy/checks/dns-zones.js';
import { PolicyEngine } from '../policy/engine.js';
import type { Evidence, Verdict } from '../policy/evidence.js';
import { shortestChange } from '../policy/advice.js';
import { loadPolicyDir } from '../policy/load.js';
import { PolicyErrors } from '../policy/policy-error.js';
import { createPolicyState, localIdentity, storeSettings } from '../policy/state.js';
import { greylistTriplet } from '../policy/checks/greylist.js';
import { tenths } from '../policy/checks/reputation.js';
import type { ReputationSnapshot, StateStore } from '../state/store.js';
import { createStateStore, storeConnected } from '../state/create-store.js';
import { createLogger } from '../metrics/logger.js';
import { pino } from 'pino';

export interface ExplainArgs {
  readonly config: string;
  readonly policies?: string | undefined;
  readonly ip: string;
  readonly helo?: string | undefined;
  readonly from?: string | undefined;
  readonly rcpt?: string | undefined;
  readonly json?: boolean | undefined;
  /** Override state.store (memory, or redis://…): whose memory to read. */
  readonly store?: string | undefined;
}

/** What the client meets at one stage. */
interface StageOutcome {
  readonly stage: Stage;
  readonly outcome: 'continue' | 'held' | 'refused';
  readonly delay?: number;
  readonly reply?: string;
}

export interface Explanation {
  readonly client: { ip: string; helo?: string | undefined; from?: string | undefined; rcpt?: string | undefined; name: string };
  readonly policy: string;
  readonly evidence: readonly Evidence[];
  readonly lookups: readonly ZoneLookup[];
  readonly score: number;
  readonly thresholds: { tarpit: number; reject: number; drop: number };
  readonly verdict: Verdict;
  readonly firstContact: boolean;
  /** The knownSenders rule that vouched for the client (it skips the first-contact hold and greylisting). */
  readonly knownSender?: string | undefined;
  /** The allowlist cache vouched: for this address, or for its network (what the store holds: empty in explain's own memory). */
  readonly passed?: 'address' | 'network' | undefined;
  readonly path: 'relay' | 'hold' | 'refuse';
  readonly profile?: string | undefined;
  readonly stages: readonly StageOutcome[];
  /** A held client that sits every delay out gets this, instead of 354. */
  readonly end?: string | undefined;
  /** The client's network's history (decayed counts), when the store was asked (not for the allow list). */
  readonly reputation?: ReputationSnapshot | undefined;
  /** With --from and --rcpt: the triplet's greylisting state, and whether this client would skip greylisting. */
  readonly greylisting?: GreylistingView | undefined;
  /** For a client that would not be relayed at once: the shortest changes that would relay it (policy/advice.ts). */
  readonly advice: readonly string[];
}

export interface GreylistingView {
  readonly enabled: boolean;
  readonly triplet: { readonly network: string; readonly sender: string; readonly recipient: string };
  readonly state: 'unknown' | 'pending' | 'passed';
  /** When the triplet was first seen (pending) or its network passed (passed), ISO 8601. */
  readonly since?: string | undefined;
  /** Why this client is never greylisted; absent when its recipients would be. */
  readonly exempt?: string | undefined;
}

const WALK: readonly Stage[] = ['connect', 'helo', 'mail', 'rcpt', 'data'];

export async function runExplain(args: ExplainArgs): Promise<number> {
  if (isIP(args.ip) === 0) {
    console.error(`--ip: not an IP address: "${args.ip}"`);
    return 1;
  }
  let explanation: Explanation;
  let store: StateStore | undefined;
  try {
    const config = loadConfigFile(args.config, { policies: args.policies, store: args.store });
    // The configured store: with Redis, explain reads what the fleet remembers (greylisting, reputation, the allowlist cache).
    store = createStateStore(config.state, createLogger('warn', pino.destination(2)));
    const health = await storeConnected(store);
    if (health.degraded) console.error(`state store: ${health.reason ?? 'not reachable'}; what this process remembers is empty`);
    explanation = await explain(args, store, config);
  } catch (err) {
    if (err instanceof ConfigErrors || err instanceof PolicyErrors) {
      for (const e of err.errors) console.error(e.message);
      return 1;
    }
    throw err;
  } finally {
    await store?.close();
  }
  console.log(args.json ? JSON.stringify(explanation, null, 2) : render(explanation));
  return 0;
}

/** `store`: a shared store to read the fleet's memory from (serve's `--store`); default an empty memory store. `loaded`: the configuration, when the caller read it already. */
export async function explain(args: ExplainArgs, store?: StateStore, loaded?: Config): Promise<Explanation> {
  const config = loaded ?? loadConfigFile(args.config, { policies: args.policies });
  const policy = loadPolicyDir(config.policies);
  const state = createPolicyState(config, store);
  state.store.configure(storeSettings(policy));
  const engine = new PolicyEngine(policy, state, localIdentity(config));
  const { session, report } = await engine.vet(args.ip, { needName: true, count: false });
  const stages: StageOutcome[] = [];
  for (const stage of WALK) {
    // The HELO name is evidence from the helo stage on, as in a live session.
    if (stage === 'helo' && args.helo !== undefined) engine.helo(session, args.helo);
    const action = session.actionAt(stage);
    if (action.kind === 'refuse') {
      stages.push({ stage, outcome: 'refused', reply: toWire(action.error.reply).trimEnd() });
      break;
    }
    if (action.kind === 'hold') {
      stages.push({ stage, outcome: 'held', delay: stageDelay(action.profile, stage) });
    } else stages.push({ stage, outcome: 'continue' });
  }
  const refusedAtOnce = stages[0]?.outcome === 'refused';
  const path = refusedAtOnce ? 'refuse' : session.held || session.verdict !== 'pass' ? 'hold' : 'relay';
  const profile = session.profile;
  const refused = stages.some((s) => s.outcome === 'refused');
  const end =
    profile === undefined || refused
      ? undefined
      : profile.end.kind === 'relay'
        ? 'relayed in the same connection after the banner delay (allowlisted)'
        : `${toWire(survivorReply(profile)).trimEnd()}${profile.end.kind === 'allowlist' ? ' (allowlisted: the retry is relayed)' : ''}`;
  let greylisting: GreylistingView | undefined;
  if (args.from !== undefined && args.rcpt !== undefined) {
    const triplet = greylistTriplet(args.ip, args.from, args.rcpt, policy);
    const peek = await state.store.peekGreylist(triplet, policy.greylisting, Date.now());
    const exempt = engine.greylistExempt(session);
    greylisting = {
      enabled: policy.greylisting.enabled,
      triplet,
      state: peek.state,
      since: peek.since === undefined ? undefined : new Date(peek.since).toISOString(),
      exempt,
    };
  }
  return {
    client: { ip: args.ip, helo: args.helo, from: args.from, rcpt: args.rcpt, name: session.clientName },
    policy: policy.file,
    evidence: session.score.evidence,
    lookups: report.lookups,
    score: session.score.total,
    thresholds: policy.thresholds,
    verdict: session.verdict,
    firstContact: session.firstContact,
    knownSender: session.knownSender,
    passed: session.passed,
    path,
    profile: profile?.name,
    stages,
    end,
    reputation: report.reputation,
    greylisting,
    advice: refusedAtOnce ? [] : shortestChange(session.advice()),
  };
}

function render(e: Explanation): string {
  const out: string[] = [];
  out.push(`client ${e.client.ip}${e.client.helo ? ` HELO ${e.client.helo}` : ''} (FCrDNS name: ${e.client.name})`);
  out.push(`policy ${e.policy}`);
  out.push('');
  out.push('evidence:');
  if (e.evidence.length === 0) out.push('  (none)');
  for (const ev of e.evidence) out.push(`  ${ev.check.padEnd(22)} ${signed(ev.weight).padStart(5)}  ${ev.reason}`);
  if (e.lookups.length > 0) {
    out.push('');
    out.push('DNS zones:');
    for (const l of e.lookups) out.push(`  ${l.kind} ${l.zone.padEnd(28)} ${l.result.padEnd(10)} ${l.detail}`);
  }
  out.push('');
  const t = e.thresholds;
  out.push(`score ${e.score} -> verdict ${e.verdict} (tarpit at ${t.tarpit}, reject at ${t.reject}, drop at ${t.drop})`);
  if (e.knownSender !== undefined) out.push(`known sender (${e.knownSender}): no first-contact hold, no greylisting`);
  if (e.passed === 'address') out.push('in the allowlist cache: it sat a hold out before');
  if (e.passed === 'network') out.push('its network is in the allowlist cache: a neighbour sat a hold out');
  if (e.firstContact && e.verdict === 'pass') out.push('first contact: held before it may deliver; a client that sits the hold out quietly is allowlisted and its retry is relayed');
  out.push(`path: ${e.path}${e.profile ? ` (profile ${e.profile})` : ''}`);
  for (const s of e.stages) {
    const what = s.outcome === 'refused' ? `refused: ${s.reply ?? ''}` : s.outcome === 'held' ? `held ${s.delay ?? 0} s` : e.path === 'relay' ? 'relayed to the backend' : 'answered';
    out.push(`  ${s.stage.padEnd(8)} ${what}`);
  }
  if (e.end !== undefined) out.push(`  end      ${e.end}`);
  if (e.reputation !== undefined) out.push(`reputation of the client's network: ${tenths(e.reputation.bad)} bad, ${tenths(e.reputation.good)} delivered (decayed)`);
  const g = e.greylisting;
  if (g !== undefined) {
    const triplet = `(${g.triplet.network}, ${g.triplet.sender}, ${g.triplet.recipient})`;
    const state = g.state === 'unknown' ? 'not seen' : g.state === 'pending' ? `first seen ${g.since ?? '?'}, waiting for its retry` : `network passed ${g.since ?? '?'}`;
    const verdict = !g.enabled ? 'greylisting is off' : g.exempt !== undefined ? `exempt: ${g.exempt}` : g.state === 'passed' ? 'relayed' : 'its RCPT would get 451 4.7.1 Greylisted';
    out.push(`greylisting ${triplet}: ${state}; ${verdict}`);
  } else if (e.client.from !== undefined || e.client.rcpt !== undefined) out.push('(give both --from and --rcpt to see the greylisting state)');
  if (e.advice.length > 0) {
    out.push('to have it relayed at once:');
    for (const a of e.advice) out.push(`  ${a}`);
  }
  out.push('(explain only looks: nothing is counted or learnt; with the memory store it does not see the running proxy\'s allowlist cache, rate windows, reputation or greylist)');
  return out.join('\n');
}


function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}
