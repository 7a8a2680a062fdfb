/**
 * The hold (DESIGN §3 tarpit): a minimal SMTP responder on the raw socket
 * that can only delay, answer and close. It never relays and never takes a
 * body: an accepted DATA gets the end action (the DATA wait, then the
 * observer's reply) instead of 354.
 *
 * Why not smtp-server: an idle smtp-server connection costs ~14.5 KB RSS, a
 * raw socket ~3.6 KB (NOTES.md), and smtp-server has no hook for EHLO, NOOP,
 * RSET or unknown commands, whose replies a tarpit must be able to delay.
 *
 * Cheapness, because issue 4 holds tens of thousands of these:
 * - one TimerQueue entry at a time per session (the reply's deadline, the
 *   client's idle deadline, or the close grace), the session itself as target;
 * - socket listeners are shared functions that find the session through a
 *   symbol on the socket, not closures per session or per wait (hold-socket.ts);
 * - while a reply is held the socket is read only until the first chunk (to
 *   notice talking out of turn), then paused, so what a bot keeps sending
 *   stays in the kernel;
 * - nothing grows with hold time: counters, the stage clocks' fixed array
 *   (hold-clock.ts), and bounded line, byte and recipient limits.
 *
 * What each command gets and changes is hold-commands.ts's; this module
 * holds, writes and ends.
 *
 * Every reply is written by `send` after `respond` held it: the one place
 * issue 4's per-reply delays and stutter go.
 */
import type { Socket } from 'node:net';
import { toWire, type Reply } from '../core/reply.js';
import { STAGES, type Stage } from '../core/stage.js';
import { classifyCommandLine } from '../policy/checks/protocol.js';
import type { TarpitProfile } from '../policy/spec.js';
import { HoldDialogue, R, endReply, hostReply, type Effect } from './hold-commands.js';
import { STAGE_INDEX, StageClock, stageDelay } from './hold-clock.js';
import { attach, detach, endSocket, kData, kFinish, kHangup, type SocketSink } from './hold-socket.js';
import { LineReader, type LineResult } from './line-reader.js';
import { holdTimers, type TimerHandle, type TimerQueue, type TimerTarget } from './timer-queue.js';
import {
  DEFAULT_HOLD_LIMITS,
  type Decision,
  type HoldControl,
  type HoldEvent,
  type HoldEventKind,
  type HoldLimits,
  type HoldObserver,
  type HoldOutcome,
  type HoldSummary,
  type LineClass,
} from './types.js';

export { endReply } from './hold-commands.js';

export interface HoldOptions {
  /** Our name in the banner and the EHLO reply. */
  readonly hostname: string;
  /** Delays per stage and the end; `session.setProfile` switches it later. */
  readonly profile: TarpitProfile;
  readonly observer?: HoldObserver;
  /** Missing fields take DEFAULT_HOLD_LIMITS. */
  readonly limits?: Partial<HoldLimits>;
  /** Default: the process-wide `holdTimers`. */
  readonly timers?: TimerQueue;
  /** Is the session's first command line SMTP at all? Default: `classifyCommandLine` from the protocol checks. */
  readonly classify?: (line: string) => LineClass;
  /** Bytes the caller already took off the socket (and did not unshift): they arrived before any banner, so they are a pregreet. */
  readonly preread?: Buffer;
  /** SIZE advertised in the EHLO reply, bytes; MAIL with a larger SIZE= gets 552. Default 10 MiB. */
  readonly sizeLimit?: number;
  /** An observer threw; the session answers 451 4.3.0 and closes. Wire this to the trap's counter and log. */
  readonly onError?: (err: unknown) => void;
}

export function hold(socket: Socket, options: HoldOptions): HoldSession {
  return new HoldSession(socket, options);
}

const WAIT = 0; // a reply is held
const TURN = 1; // waiting for the client's next command
const CLOSING = 2; // last reply written, socket ending
const CLOSED = 3; // 'close' seen, summary delivered
type Phase = typeof WAIT | typeof TURN | typeof CLOSING | typeof CLOSED;

const DEFAULT_SIZE = 10 * 1024 * 1024;

export class HoldSession implements HoldControl, TimerTarget, SocketSink {
  private phase: Phase = WAIT;
  private currentStage: Stage = 'connect';
  private furthest = 0;
  private currentProfile: TarpitProfile;
  private readonly observer: HoldObserver | undefined;
  private readonly hostname: string;
  private readonly limits: HoldLimits;
  private readonly timers: TimerQueue;
  private readonly classify: (line: string) => LineClass;
  private readonly onError: ((err: unknown) => void) | undefined;
  private readonly reader: LineReader;
  private readonly dialogue: HoldDialogue;
  private readonly clock = new StageClock();
  private timer: TimerHandle | undefined;

  // The reply being held and what it does once written.
  private pending: Reply | 'end' = R.ok;
  private pendingEffect: Effect;
  private pendingClose: HoldOutcome | undefined;
  private waitStage: Stage = 'connect';
  /** Out-of-turn bytes already reported in this wait. */
  private talked = false;
  private draining = false;

  private outcome: HoldOutcome | undefined;
  private hangupStage: Stage | undefined;
  private socketError: string | undefined;
  private commands = 0;
  private errors = 0;
  private bytesRead = 0;
  private firstLine = true;
  private bareLfSeen = false;
  private readonly events: Record<HoldEventKind, number> = { pregreet: 0, pipelining: 0, bareLf: 0, nonSmtp: 0 };

  constructor(
    private readonly socket: Socket,
    options: HoldOptions,
  ) {
    this.currentProfile = options.profile;
    this.observer = options.observer;
    this.hostname = options.hostname;
    this.limits = options.limits ? { ...DEFAULT_HOLD_LIMITS, ...options.limits } : DEFAULT_HOLD_LIMITS;
    this.timers = options.timers ?? holdTimers;
    this.classify = options.classify ?? classifyDefault;
    this.onError = options.onError;
    this.reader = new LineReader(this.limits.maxLineLength);
    this.dialogue = new HoldDialogue(this.hostname, options.sizeLimit ?? DEFAULT_SIZE, this.limits.maxRecipients);

    if (!attach(socket, this)) {
      // Gone before we started.
      this.phase = CLOSING;
      this.outcome = 'hangup';
      this.hangupStage = 'connect';
      return;
    }
    try {
      if (options.preread !== undefined && options.preread.length > 0) {
        this.bytesRead += options.preread.length;
        this.reader.push(options.preread);
      }
      this.respond('connect', this.currentProfile.delays.banner, hostReply.banner(this.hostname), 'banner', undefined);
    } catch (err) {
      this.fail(err);
    }
  }

  get stage(): Stage {
    return this.currentStage;
  }

  get profile(): TarpitProfile {
    return this.currentProfile;
  }

  get closed(): boolean {
    return this.phase >= CLOSING;
  }

  setProfile(profile: TarpitProfile): void {
    this.currentProfile = profile;
  }

  close(reply?: Reply): void {
    this.closeWith(reply ?? this.dropReply(), 'closed');
  }

  /** TimerTarget: the held reply is due, the client's turn timed out, or a closing socket's grace ran out. */
  onTimer(): void {
    this.timer = undefined;
    try {
      if (this.phase === WAIT) this.deliver();
      else if (this.phase === TURN) this.closeWith(hostReply.timeout(this.hostname), 'idle');
      else if (this.phase === CLOSING) this.socket.destroy();
    } catch (err) {
      this.fail(err);
    }
  }

  // --- entry points of the shared socket listeners (hold-socket.ts) ---

  [kData](chunk: Buffer): void {
    try {
      this.data(chunk);
    } catch (err) {
      this.fail(err);
    }
  }

  [kHangup](err: Error | undefined): void {
    this.hangup(err);
  }

  [kFinish](): void {
    this.finish();
  }

  // --- input ---

  private data(chunk: Buffer): void {
    if (this.phase >= CLOSING) return;
    this.bytesRead += chunk.length;
    if (this.bytesRead > this.limits.maxBytes) {
      this.closeWith(hostReply.tooMuchInput(this.hostname), 'abuse');
      return;
    }
    this.reader.push(chunk);
    if (this.phase === TURN) {
      this.drain();
      return;
    }
    // A reply is held and the client talks: note it, and let the kernel keep the rest.
    this.socket.pause();
    const decision = this.outOfTurn();
    if (decision === undefined || this.phase !== WAIT) return;
    if (decision === 'drop') return this.drop();
    this.override(decision);
    if (typeof decision === 'object' && decision.now === true) {
      this.cancelTimer();
      this.deliver();
    }
  }

  /** Takes the client's buffered lines one by one while it is its turn; then reads more. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.phase === TURN) {
        const line = this.reader.next();
        if (line === undefined) break;
        this.line(line);
      }
    } finally {
      this.draining = false;
    }
    if (this.phase === TURN) this.socket.resume();
  }

  private line(line: LineResult): void {
    this.settle();
    this.commands++;
    if (line.kind === 'tooLong') {
      this.firstLine = false;
      this.error(R.tooLong);
      return;
    }
    const text = line.text;
    let decision: Decision | undefined;
    if (line.bareLf && !this.bareLfSeen) {
      this.bareLfSeen = true;
      decision = this.raise('bareLf');
    }
    if (this.firstLine) {
      this.firstLine = false;
      if (this.classify(text) === 'nonSmtp') decision = first(decision, this.raise('nonSmtp', text.slice(0, 100)));
    }
    if (this.phase !== TURN) return;
    if (decision === 'drop') return this.drop();

    const plan = this.dialogue.plan(text);
    this.dialogue.record(plan);
    if (decision === undefined || decision === 'continue') {
      decision = this.checked(this.observer?.onCommand?.({ verb: plan.verb, arg: plan.arg, stage: this.currentStage, reply: plan.reply }, this));
      if (this.phase !== TURN) return;
      if (decision === 'drop') return this.drop();
    }

    let reply = plan.reply;
    let close: HoldOutcome | undefined = plan.quit === true ? 'quit' : undefined;
    let immediate = false;
    if (typeof decision === 'object') {
      reply = decision.reply;
      if (decision.close === true) close ??= 'dropped';
      immediate = decision.now === true;
    } else if (plan.error === true && this.tooManyErrors()) {
      return;
    }
    if (plan.data === true) this.enter('data');
    if (plan.quit === true) this.enter('quit');
    const stage = plan.stage ?? this.currentStage;
    this.respond(stage, immediate || plan.stage === undefined ? 0 : stageDelay(this.currentProfile, stage), reply, plan.effect, close);
  }

  /** A protocol error the observer is not asked about (too-long line). */
  private error(reply: Reply): void {
    if (!this.tooManyErrors()) this.respond(this.currentStage, 0, reply, undefined, undefined);
  }

  /** Counts a protocol error; past maxErrors the session ends with 421 (true). */
  private tooManyErrors(): boolean {
    if (++this.errors <= this.limits.maxErrors) return false;
    this.closeWith(hostReply.tooManyErrors(this.hostname), 'errors');
    return true;
  }

  // --- replies ---

  /**
   * Every reply goes through here: held `delay` seconds (0: written now), then
   * `deliver` writes it. Bytes already waiting from the client are talking out of turn.
   */
  private respond(stage: Stage, delay: number, reply: Reply | 'end', effect: Effect, close: HoldOutcome | undefined): void {
    this.cancelTimer();
    this.phase = WAIT;
    this.waitStage = stage;
    this.clock.restart();
    this.talked = false;
    this.pending = reply;
    this.pendingEffect = effect;
    this.pendingClose = close;
    if (this.reader.hasInput) {
      const decision = this.outOfTurn();
      if (this.phase !== WAIT) return;
      if (decision === 'drop') return this.drop();
      if (decision !== undefined) {
        this.override(decision);
        if (typeof decision === 'object' && decision.now === true) delay = 0;
      }
    }
    if (delay <= 0) {
      this.deliver();
      return;
    }
    this.timer = this.timers.schedule(this, delay * 1000);
    // Read until the first byte to notice talking out of turn; after that the kernel keeps it.
    if (this.talked) this.socket.pause();
    else this.socket.resume();
  }

  /** The held reply is due: write it and let the client talk, or close. */
  private deliver(): void {
    this.settle();
    const pending = this.pending;
    if (pending === 'end') {
      const reply = this.observer?.onSurvived?.(this) ?? endReply(this.currentProfile);
      if (this.phase === WAIT) this.closeWith(reply, 'survived');
      return;
    }
    if (this.pendingClose !== undefined) {
      this.closeWith(pending, this.pendingClose);
      return;
    }
    this.send(pending);
    if (this.phase !== WAIT) return;
    if (pending.code >= 200 && pending.code < 300) {
      const next = this.dialogue.apply(this.pendingEffect);
      if (next !== undefined) this.enter(next);
    }
    this.turn();
  }

  private turn(): void {
    this.phase = TURN;
    this.clock.restart();
    this.timer = this.timers.schedule(this, this.limits.idleTimeout * 1000);
    this.drain();
  }

  /** The one place a reply is written (issue 4: per-reply delay and stutter go here). */
  private send(reply: Reply): void {
    const socket = this.socket;
    if (!socket.writable) return;
    socket.write(toWire(reply));
    if (socket.writableLength > this.limits.maxUnread && this.phase < CLOSING) {
      // It does not read what we say: nothing more to learn, and our heap would hold it.
      this.settle();
      this.outcome = 'abuse';
      this.cancelTimer();
      this.phase = CLOSING;
      socket.destroy();
    }
  }

  private outOfTurn(): Decision | undefined {
    if (this.talked) return undefined;
    this.talked = true;
    return this.raise(this.currentStage === 'connect' ? 'pregreet' : 'pipelining', this.reader.peek(100), this.reader.buffered);
  }

  private raise(kind: HoldEventKind, line?: string, bytes?: number): Decision | undefined {
    this.events[kind]++;
    const event: HoldEvent = { kind, stage: this.currentStage, ...(line === undefined ? {} : { line }), ...(bytes === undefined ? {} : { bytes }) };
    return this.checked(this.observer?.onEvent?.(event, this));
  }

  private checked(decision: Decision | undefined): Decision | undefined {
    if (typeof decision === 'object' && decision.reply.code === 354) throw new Error('a hold never answers 354: it takes no body');
    return decision;
  }

  /** An event's decision replaces the reply being held. */
  private override(decision: Exclude<Decision, 'drop'>): void {
    if (decision === 'continue') return;
    this.pending = decision.reply;
    this.pendingEffect = undefined;
    if (decision.close === true) this.pendingClose ??= 'dropped';
  }

  private drop(): void {
    this.closeWith(this.dropReply(), 'dropped');
  }

  private dropReply(): Reply {
    return hostReply.drop(this.hostname);
  }

  // --- ending ---

  /** Writes a last reply (if any), ends the socket and destroys it once flushed. */
  private closeWith(reply: Reply | undefined, outcome: HoldOutcome): void {
    if (this.phase >= CLOSING) return;
    this.settle();
    this.cancelTimer();
    this.outcome = outcome;
    if (reply !== undefined) this.send(reply);
    if (this.phase >= CLOSING) return;
    this.phase = CLOSING;
    const socket = this.socket;
    if (socket.destroyed) return;
    endSocket(socket);
    this.timer = this.timers.schedule(this, this.limits.closeGrace * 1000);
  }

  /** The client closed (FIN) or the socket failed before we closed it. */
  private hangup(err: Error | undefined): void {
    if (err !== undefined) this.socketError ??= (err as NodeJS.ErrnoException).code ?? err.name;
    if (this.phase >= CLOSING) return;
    this.settle();
    this.cancelTimer();
    this.outcome = 'hangup';
    this.hangupStage = this.currentStage;
    this.phase = CLOSING;
    this.socket.destroy();
  }

  /** 'close': the session is over. Delivers the summary once and lets go of everything. */
  private finish(): void {
    if (this.phase === CLOSED) return;
    if (this.phase !== CLOSING) {
      // Destroyed from outside without an error or a FIN we saw.
      this.settle();
      this.outcome = 'hangup';
      this.hangupStage = this.currentStage;
    }
    this.cancelTimer();
    this.phase = CLOSED;
    this.reader.clear();
    detach(this.socket);
    const summary = this.summary();
    try {
      this.observer?.onClose?.(summary);
    } catch (err) {
      this.report(err);
    }
  }

  /** An observer (or we) threw: 451 4.3.0 to this client, everyone else goes on (DESIGN §4.3). */
  private fail(err: unknown): void {
    this.report(err);
    if (this.phase < CLOSING) this.closeWith(R.internal, 'error');
    else if (this.phase === CLOSING) this.socket.destroy();
  }

  private report(err: unknown): void {
    try {
      this.onError?.(err);
    } catch {
      // The error reporter itself failed; nothing sensible is left to tell.
    }
  }

  // --- bookkeeping ---

  /** Adds the running wait or turn to its stage's clock. */
  private settle(): void {
    if (this.phase === WAIT) this.clock.held(this.waitStage);
    else if (this.phase === TURN) this.clock.client(this.currentStage);
    else this.clock.restart();
  }

  private enter(stage: Stage): void {
    this.currentStage = stage;
    // QUIT says nothing about how far the client got; the outcome records it.
    if (stage !== 'quit') this.furthest = Math.max(this.furthest, STAGE_INDEX[stage]);
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.timers.cancel(this.timer);
      this.timer = undefined;
    }
  }

  private summary(): HoldSummary {
    const clock = this.clock.read();
    const d = this.dialogue;
    return {
      outcome: this.outcome ?? 'hangup',
      stage: STAGES[this.furthest]!,
      ...(this.hangupStage !== undefined && { hangup: this.hangupStage }),
      ...(this.socketError !== undefined && { socketError: this.socketError }),
      profile: this.currentProfile.name,
      seconds: clock.seconds,
      heldSeconds: clock.heldSeconds,
      held: clock.held,
      client: clock.client,
      commands: this.commands,
      errors: this.errors,
      bytesRead: this.bytesRead,
      ...(d.helo !== undefined && { helo: d.helo }),
      ...(d.mailFrom !== undefined && { mailFrom: d.mailFrom }),
      rcpts: d.rcpts ?? [],
      rcptCount: d.rcptCount,
      events: { ...this.events },
    };
  }
}

function first(a: Decision | undefined, b: Decision | undefined): Decision | undefined {
  return a === undefined || a === 'continue' ? b : a;
}

/** The protocol checks' classifier in the hold's terms: unknown verbs are SMTP, only clearly other protocols are not. */
function classifyDefault(line: string): LineClass {
  return classifyCommandLine(line) === 'non-smtp' ? 'nonSmtp' : 'smtp';
}
