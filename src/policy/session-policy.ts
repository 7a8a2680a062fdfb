/**
 * One client session's standing with the policy (docs/design.md §2): the evidence so
 * far, its score, the verdict it gives and, for a held client, the tarpit
 * profile. It keeps the Policy the session started with, so a reload never
 * changes the rules under a session in flight (docs/design.md §4.7).
 *
 * The verdict only escalates (src/policy/score.ts says why). What the verdict
 * means at each stage is decided here, once, for both paths that serve a
 * client: smtp-server's hooks (relay) and the tarpit's hold.
 */
import { replyError, type SmtpReplyError } from '../core/errors.js';
import { STAGE_INDEX, type Stage } from '../core/stage.js';
import { REASON_TEXT, VERDICTS, type Evidence, type ReasonClass, type Verdict } from './evidence.js';
import { Score } from './score.js';
import type { Policy, RejectStage, TarpitProfile } from './spec.js';
import type { RateSlot } from '../state/store.js';
import { localHoldHint, type AdviceSubject } from './advice.js';

/** What the session's log line and `explain` say about its standing. */
export interface SessionSummary {
  readonly verdict: Verdict;
  readonly score: number;
  readonly firstContact: boolean;
  /** The knownSenders rule that vouched. */
  readonly knownSender?: string;
  /** The allowlist cache vouched: for this address, or for its network. */
  readonly passed?: 'address' | 'network';
  readonly reasons: string[];
  /** For a loopback or private client held on rDNS or HELO evidence: why, and what lets it through (advice.ts). */
  readonly hint?: string;
}

/** What to do at a stage, given the verdict so far. */
export type StageAction =
  | { readonly kind: 'continue' }
  /** Answer this refusal now; `close` after writing it (drop, or a 554 greeting). */
  | { readonly kind: 'refuse'; readonly error: SmtpReplyError; readonly close: boolean }
  /** Held: wait the profile's delay for the stage; never relay. */
  | { readonly kind: 'hold'; readonly profile: TarpitProfile };

const CONTINUE: StageAction = { kind: 'continue' };

/** The reject verdict's refusal is answered at `rejectAt` or at the first stage after it the client reaches. */
function reached(stage: Stage, rejectAt: RejectStage): boolean {
  return STAGE_INDEX[stage] >= STAGE_INDEX[rejectAt];
}

export interface SessionPolicyInit {
  readonly policy: Policy;
  readonly address: string;
  /** In the allow list: no checks, no delays, never refused by the score. */
  readonly trusted: boolean;
  /** The client's rate group (client-group.ts), as the engine keyed the store with it; absent for a trusted client. */
  readonly group?: string;
}

export class SessionPolicy {
  readonly policy: Policy;
  readonly address: string;
  readonly trusted: boolean;
  readonly group: string | undefined;
  readonly score: Score;
  /**
   * The allowlist cache vouched at connect (set by the engine): the client's
   * own address passed a hold (`address`: the costly checks are skipped too),
   * or a neighbour in its network did (`network`).
   */
  passed: 'address' | 'network' | undefined = undefined;
  /** The client came back sooner than `firstContact.minRetryDelay` after its 451 (set by the engine): held again. */
  returnedEarly = false;
  /** The knownSenders rule that vouched for the client (set by the engine), e.g. `knownSenders.rdnsSuffixes: google.com`. */
  knownSender: string | undefined = undefined;
  /** Set by the engine once the connect-stage checks are in: first contact holds a client nobody vouched for. */
  firstContact = false;
  /** The forward-confirmed client name for XCLIENT NAME (`[UNAVAILABLE]` when none). */
  clientName = '[UNAVAILABLE]';
  /** performance.now() when the connect-stage checks began: a relay session's deadline (limits.sessionTimeout) counts from here, vetting included. */
  readonly since = performance.now();
  private current: Verdict = 'pass';
  /** The client group's concurrency slot (the rate check), given back by `release`. */
  private slot: RateSlot | undefined;
  /** Checks that count once per session (HELO, harvest, each protocol violation); made on first use, as most sessions never need it. */
  private counted: Set<string> | undefined;

  constructor(init: SessionPolicyInit) {
    this.policy = init.policy;
    this.score = new Score(init.policy.thresholds);
    this.address = init.address;
    this.trusted = init.trusted;
    this.group = init.group;
  }

  get verdict(): Verdict {
    return this.current;
  }

  /** The profile a held client is held with: the tarpit's once the score says tarpit, first contact's before. */
  get profile(): TarpitProfile | undefined {
    if (this.current === 'tarpit') return this.policy.tarpitProfile;
    if (this.current === 'pass' && this.firstContact) return this.policy.firstContact.profile;
    return undefined;
  }

  /** Whether this session is held (tarpit verdict, or a first contact), i.e. must never be relayed. */
  get held(): boolean {
    return this.profile !== undefined;
  }

  /** Adds evidence; returns true when the verdict escalated. Trusted clients collect evidence but keep `pass`. */
  add(evidence: Evidence | readonly Evidence[]): boolean {
    const list: readonly Evidence[] = Array.isArray(evidence) ? evidence : [evidence as Evidence];
    let escalated = false;
    for (const e of list) {
      const { after } = this.score.add(e);
      if (this.trusted) continue;
      if (VERDICTS.indexOf(after) > VERDICTS.indexOf(this.current)) {
        this.current = after;
        escalated = true;
      }
    }
    return escalated;
  }

  /** True the first time only: some evidence counts once per session however often it shows. */
  once(key: string): boolean {
    const counted = (this.counted ??= new Set());
    if (counted.has(key)) return false;
    counted.add(key);
    return true;
  }

  /** The session takes a place in its client group's concurrency count (the rate check), until `release`. */
  occupy(slot: RateSlot): void {
    this.slot = slot;
  }

  /** Hands the slot over (to the store's `finish`, which releases it in the same write); `release` is then a no-op. */
  takeSlot(): RateSlot | undefined {
    const slot = this.slot;
    this.slot = undefined;
    return slot;
  }

  /** Gives the client group's concurrency slot back; when the session ends, and only the first call counts. */
  release(): void {
    this.slot?.release();
    this.slot = undefined;
  }

  /** The reason class a refused client is told, never the score. */
  get reasonClass(): ReasonClass {
    return this.score.strongestClass() ?? 'protocol';
  }

  /** What the verdict means at `stage`. */
  actionAt(stage: Stage): StageAction {
    switch (this.current) {
      case 'drop':
        return { kind: 'refuse', error: replyError('TARPIT_ERR_POLICY_DROP', { text: REASON_TEXT[this.reasonClass] }), close: true };
      case 'reject': {
        const rejectAt = this.policy.rejectAt;
        if (!reached(stage, rejectAt)) return CONTINUE;
        const text = REASON_TEXT[this.reasonClass];
        if (stage === 'connect') return { kind: 'refuse', error: replyError('TARPIT_ERR_POLICY_REJECT_CONNECT', { text }), close: true };
        return { kind: 'refuse', error: replyError('TARPIT_ERR_POLICY_REJECT', { text }), close: false };
      }
      default: {
        const profile = this.profile;
        return profile ? { kind: 'hold', profile } : CONTINUE;
      }
    }
  }

  /** The session as advice.ts reads it. */
  advice(): AdviceSubject {
    return { address: this.address, evidence: this.score.evidence, score: this.score.total, verdict: this.current, firstContact: this.firstContact, policy: this.policy };
  }

  /** One line's worth for the session log and `explain`: who vouched (if anyone), and for a local client held on rDNS or HELO evidence, why in plain words. */
  summary(): SessionSummary {
    const hint = this.held ? localHoldHint(this.advice()) : undefined;
    return {
      verdict: this.current,
      score: this.score.total,
      firstContact: this.firstContact,
      ...(this.knownSender !== undefined && { knownSender: this.knownSender }),
      ...(this.passed !== undefined && { passed: this.passed }),
      reasons: this.score.evidence.map((e) => `${e.check}${e.weight === 0 ? '' : e.weight > 0 ? ` +${e.weight}` : ` ${e.weight}`}: ${e.reason}`),
      ...(hint !== undefined && { hint }),
    };
  }
}
