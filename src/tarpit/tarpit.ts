/**
 * Where the front door sends every client the policy will not relay: held
 * (a tarpit verdict, or a first contact) or refused at a later stage (a reject
 * verdict with `rejectAt` past connect). The hold (hold.ts) owns the socket,
 * the delays and the protocol; this module is its observer and turns what it
 * sees into evidence for the session's policy, and the verdict into replies.
 */
import type { Socket } from 'node:net';
import type { Config } from '../config/schema.js';
import { ERRORS, replyError } from '../core/errors.js';
import type { Reply } from '../core/reply.js';
import type { Stage } from '../core/stage.js';
import type { Logger } from '../metrics/logger.js';
import type { Evidence, Verdict } from '../policy/evidence.js';
import { bareLfEvidence, nonSmtpEvidence, pipeliningEvidence, pregreetEvidence } from '../policy/checks/protocol.js';
import type { SessionPolicy } from '../policy/session-policy.js';
import type { TarpitProfile } from '../policy/spec.js';
import type { Vetted } from '../smtp/front.js';
import type { Trap } from '../trap/trap.js';
import { endReply, hold, type HoldSession } from './hold.js';
import type { MaybePromise } from '../state/maybe-promise.js';
import type { AllowlistOutcome, SessionOutcome } from '../state/store.js';
import type { Decision, HoldCommand, HoldControl, HoldEvent, HoldObserver, HoldOutcome, HoldSummary } from './types.js';
import { heldStageTimes, recordSessionTiming, round } from './metrics.js';

/** A rejected client is not held: it meets no delay before the refusal at `rejectAt`. */
const NO_DELAY: TarpitProfile = {
  name: 'reject',
  delays: { banner: 0, helo: 0, mail: 0, rcpt: 0, data: 0 },
  end: { kind: 'reply', code: ERRORS.TARPIT_ERR_POLICY_REJECT_CONNECT.code, text: `${ERRORS.TARPIT_ERR_POLICY_REJECT_CONNECT.enhanced} ${ERRORS.TARPIT_ERR_POLICY_REJECT_CONNECT.text}` },
};

/** What a client that sat a profile's every delay out is told (`explain` prints the same). */
export function survivorReply(profile: TarpitProfile): Reply {
  return profile.end.kind === 'allowlist' ? replyError('TARPIT_ERR_POLICY_TEMPFAIL').reply : endReply(profile);
}

/** The stage a command's reply belongs to, for the verdict's decisions. */
const COMMAND_STAGE: Readonly<Record<string, Stage>> = { HELO: 'helo', EHLO: 'helo', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data' };

export interface TarpitDeps {
  readonly config: Config;
  readonly trap: Trap;
  readonly logger: Logger;
  /** Gives a held client whose greet wait ended in a hand-over (`end: relay`) to the relay path, in the same connection. */
  readonly relay: (socket: Socket, vetted: Vetted) => void;
}

export class Tarpit {
  private readonly sessions = new Set<HoldSession>();

  /** The hold's line and recipient limits: config, read once. */
  private readonly limits: { readonly maxLineLength: number; readonly maxRecipients: number };

  constructor(private readonly deps: TarpitDeps) {
    this.limits = { maxLineLength: deps.config.limits.maxLineLength, maxRecipients: deps.config.limits.maxRecipients };
  }

  /** Held sessions now, read-only: each one's stage and profile, for the scrape-time census (metrics.ts). */
  heldSessions(): Iterable<{ readonly stage: Stage; readonly profile: TarpitProfile }> {
    return this.sessions.values();
  }

  hold(socket: Socket, vetted: Vetted): void {
    const { config } = this.deps;
    const observer = new PolicyObserver(vetted, this.deps, this.sessions);
    const session = hold(socket, {
      hostname: config.hostname,
      profile: vetted.policy.profile ?? NO_DELAY,
      observer,
      limits: this.limits,
      sizeLimit: config.limits.maxMessageSize,
    });
    observer.session = session;
    // A greet wait of 0 can hand the client over before hold() returns: nothing left to hold.
    if (!session.closed) this.sessions.add(session);
  }

  /** Shutdown: every held client is told 421 and closed; none of them has a transaction to finish. */
  close(): Promise<void> {
    const reply = replyError('TARPIT_ERR_SHUTTING_DOWN').reply;
    for (const session of this.sessions) session.close(reply);
    return Promise.resolve();
  }
}

class PolicyObserver implements HoldObserver {
  session: HoldSession | undefined;
  /** What the allowlist cache recorded for a survivor (address, and network unless its reputation was bad), for the log line. */
  private remembered: AllowlistOutcome | undefined;
  /** The score when the hold began: a survivor whose score rose since did something wrong while held. */
  private readonly startScore: number;

  constructor(
    private readonly vetted: Vetted,
    private readonly deps: TarpitDeps,
    /** The tarpit's sessions, which this one leaves when it ends or is handed over. */
    private readonly sessions: Set<HoldSession>,
  ) {
    this.startScore = vetted.policy.score.total;
  }

  private get policy(): SessionPolicy {
    return this.vetted.policy;
  }

  onEvent(event: HoldEvent, control: HoldControl): Decision {
    const policy = this.policy.policy;
    let evidence: Evidence | undefined;
    switch (event.kind) {
      case 'pregreet':
        evidence = pregreetEvidence(event.stage, event.bytes ?? 0, policy);
        break;
      case 'pipelining':
        evidence = pipeliningEvidence(event.line ?? '', policy);
        break;
      case 'bareLf':
        evidence = bareLfEvidence(policy);
        break;
      case 'nonSmtp':
        evidence = nonSmtpEvidence(event.line ?? '', policy);
        break;
    }
    this.vetted.engine.observe(this.policy, evidence);
    return this.decide(undefined, control);
  }

  onCommand(command: HoldCommand, control: HoldControl): Decision {
    if (command.verb === 'HELO' || command.verb === 'EHLO') this.vetted.engine.helo(this.policy, command.arg.split(/\s+/)[0]);
    const positive = command.reply === 'end' || command.reply.code < 400;
    return this.decide(positive ? COMMAND_STAGE[command.verb] : undefined, control);
  }

  /**
   * The verdict at this point: a drop closes at once; a reject refuses the
   * command of its stage; a verdict that rose to tarpit switches the hold to
   * the tarpit's profile from the next wait on.
   */
  private decide(stage: Stage | undefined, control: HoldControl): Decision {
    const action = this.policy.actionAt(stage ?? 'connect');
    if (action.kind === 'refuse') {
      if (action.close && this.policy.verdict === 'drop') return { reply: action.error.reply, close: true, now: true };
      if (stage !== undefined) return { reply: action.error.reply, close: action.close };
      return 'continue';
    }
    if (action.kind === 'hold' && action.profile !== control.profile) control.setProfile(action.profile);
    return 'continue';
  }

  /**
   * A client that sat every delay out. One that did nothing wrong while held
   * (its score did not rise) and whose profile ends in `allowlist` is
   * remembered, so its retry is relayed at once (docs/design.md §2); it hears 451 4.7.1.
   */
  onSurvived(control: HoldControl): Reply {
    const profile = control.profile;
    const { engine } = this.vetted;
    // Not awaited: a shared store's write lands long before the retry, and the store never rejects (store.ts).
    // What it did goes in the log line, when known by then (a client that QUITs at once may beat a Redis reply).
    if (profile.end.kind === 'allowlist' && this.clean) this.remember(engine.survived(this.policy, deferredMessage(control)));
    // Back too soon and deferred again with the same message, by whichever profile held it: its pause starts over.
    else if (this.policy.returnedEarly) this.remember(engine.deferredAgain(this.policy, deferredMessage(control)));
    return survivorReply(profile);
  }

  private remember(outcome: MaybePromise<AllowlistOutcome>): void {
    if (outcome instanceof Promise) void outcome.then((r) => (this.remembered = r));
    else this.remembered = outcome;
  }

  /** Still pass, and nothing wrong since the hold began: what earns the allowlist. */
  private get clean(): boolean {
    return this.policy.verdict === 'pass' && this.policy.score.total <= this.startScore;
  }

  /** The greet wait of an `end: relay` profile is over: a clean client goes to the relay path; one whose verdict rose is held on. */
  mayRelay(): boolean {
    return this.clean;
  }

  /**
   * Allowlisted like any survivor, and relayed in this very connection. The
   * relay path writes the banner and, at close, the session's one log line;
   * the hold writes none (its summary would be a second line for one connection).
   */
  onRelay(socket: Socket, summary: HoldSummary): void {
    if (this.session) this.sessions.delete(this.session);
    void this.vetted.engine.survived(this.policy, undefined);
    // It survived its first contact: the relay path's gates must not hold it again as one.
    this.policy.firstContact = false;
    this.deps.relay(socket, { ...this.vetted, greetWait: { seconds: summary.seconds, held: summary.heldSeconds } });
  }

  /** The observer (or the hold) threw: counted and logged by the trap, like any handler's error. */
  onError(err: unknown): void {
    this.deps.trap.catch('connect', err, { sessionId: this.vetted.id });
  }

  onClose(summary: HoldSummary): void {
    if (this.session) this.sessions.delete(this.session);
    // The store's finish gives the rate slot back in the same write; release() is the front door's guarantee for held sessions (it sets no timer for them).
    try {
      this.vetted.engine.finish(this.policy, holdOutcome(this.policy.verdict, summary.outcome));
    } finally {
      this.policy.release();
    }
    const stages = heldStageTimes(summary.held, summary.client);
    recordSessionTiming({ verdict: this.policy.verdict, stages, hangup: summary.hangup, held: summary.heldSeconds });
    this.deps.logger.info(
      {
        session: this.vetted.id,
        client: this.vetted.remoteAddress,
        port: this.vetted.remotePort,
        ...this.policy.summary(),
        path: 'hold',
        profile: summary.profile,
        outcome: summary.outcome,
        lastStage: summary.stage,
        hangup: summary.hangup,
        held: round(summary.heldSeconds),
        stages,
        helo: summary.helo,
        from: summary.mailFrom,
        rcpt: summary.rcpts.length > 0 ? summary.rcpts : undefined,
        events: summary.events,
        remembered: this.remembered,
        duration: round(summary.seconds),
      },
      'session',
    );
  }
}

/** The message a survivor is told 451 for: the envelope it sent. */
function deferredMessage(control: HoldControl): { sender: string; recipients: readonly string[] } {
  const { sender, recipients } = control.envelope;
  return { sender: sender ?? '', recipients };
}

/**
 * How a hold ends for its network's reputation (nothing is delivered from a
 * hold): bad when the policy refused it, or when the client showed itself a
 * bot (hung up while held, too many errors, abuse); else nothing to learn.
 */
function holdOutcome(verdict: Verdict, outcome: HoldOutcome): SessionOutcome {
  if (verdict === 'reject' || verdict === 'drop') return 'bad';
  return outcome === 'hangup' || outcome === 'errors' || outcome === 'abuse' || outcome === 'dropped' ? 'bad' : 'neutral';
}
