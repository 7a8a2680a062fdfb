/**
 * `smtp-tarpit explain`: what the policy would do with a client, and why
 * (DESIGN §5: every rule can be tried before it goes live). It runs the real
 * connect-stage checks, DNS included, through the resolver the configuration
 * names, then the HELO check, and prints each check's evidence, the score,
 * the verdict and what the client would meet at each stage.
 *
 * It runs in its own process, so it does not see the running proxy's memory:
 * the allowlist cache is empty here and rate windows start at zero (`count`
 * is off, so explaining never counts as a connection).
 */
import { isIP } from 'node:net';
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile } from '../config/load.js';
import type { Stage } from '../core/stage.js';
import { toWire } from '../core/reply.js';
import { survivorReply } from '../tarpit/tarpit.js';
import { stageDelay } from '../tarpit/hold-clock.js';
import type { ZoneLookup } from '../policy/checks/dns-zones.js';
import { PolicyEngine } from '../policy/engine.js';
import type { Evidence, Verdict } from '../policy/evidence.js';
import { loadPolicyDir } from '../policy/load.js';
import { PolicyErrors } from '../policy/policy-error.js';
import { createPolicyState, localIdentity } from '../policy/state.js';

export interface ExplainArgs {
  readonly config: string;
  readonly policies?: string | undefined;
  readonly ip: string;
  readonly helo?: string | undefined;
  readonly from?: string | undefined;
  readonly rcpt?: string | undefined;
  readonly json?: boolean | undefined;
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
  readonly path: 'relay' | 'hold' | 'refuse';
  readonly profile?: string | undefined;
  readonly stages: readonly StageOutcome[];
  /** A held client that sits every delay out gets this, instead of 354. */
  readonly end?: string | undefined;
}

const WALK: readonly Stage[] = ['connect', 'helo', 'mail', 'rcpt', 'data'];

export async function runExplain(args: ExplainArgs): Promise<number> {
  if (isIP(args.ip) === 0) {
    console.error(`--ip: not an IP address: "${args.ip}"`);
    return 1;
  }
  let explanation: Explanation;
  try {
    explanation = await explain(args);
  } catch (err) {
    if (err instanceof ConfigErrors || err instanceof PolicyErrors) {
      for (const e of err.errors) console.error(e.message);
      return 1;
    }
    throw err;
  }
  console.log(args.json ? JSON.stringify(explanation, null, 2) : render(explanation));
  return 0;
}

export async function explain(args: ExplainArgs): Promise<Explanation> {
  const config = loadConfigFile(args.config, { policies: args.policies });
  const policy = loadPolicyDir(config.policies);
  const engine = new PolicyEngine(policy, createPolicyState(config), localIdentity(config));
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
  return {
    client: { ip: args.ip, helo: args.helo, from: args.from, rcpt: args.rcpt, name: session.clientName },
    policy: policy.file,
    evidence: session.score.evidence,
    lookups: report.lookups,
    score: session.score.total,
    thresholds: policy.thresholds,
    verdict: session.verdict,
    firstContact: session.firstContact,
    path,
    profile: profile?.name,
    stages,
    end,
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
  if (e.firstContact && e.verdict === 'pass') out.push('first contact: held before it may deliver; a client that sits the hold out quietly is allowlisted and its retry is relayed');
  out.push(`path: ${e.path}${e.profile ? ` (profile ${e.profile})` : ''}`);
  for (const s of e.stages) {
    const what = s.outcome === 'refused' ? `refused: ${s.reply ?? ''}` : s.outcome === 'held' ? `held ${s.delay ?? 0} s` : e.path === 'relay' ? 'relayed to the backend' : 'answered';
    out.push(`  ${s.stage.padEnd(8)} ${what}`);
  }
  if (e.end !== undefined) out.push(`  end      ${e.end}`);
  if (e.client.from !== undefined || e.client.rcpt !== undefined) out.push('(sender and recipient are recorded; no check of this version uses them)');
  out.push('(explain runs in its own process: the running proxy\'s allowlist cache and rate windows are not consulted)');
  return out.join('\n');
}

function signed(n: number): string {
  return n > 0 ? `+${n}` : String(n);
}
