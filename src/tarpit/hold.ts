/**
 * The hold (docs/design.md §3 tarpit): a minimal SMTP responder on the raw socket
 * that can only delay, answer and close. It never relays and never takes a
 * body: an accepted DATA gets the end action (the DATA wait, then the
 * observer's reply) instead of 354.
 *
 * Why not smtp-server: an idle smtp-server connection costs ~14.5 KB RSS, a
 * raw socket ~3.6 KB (docs/platform-notes.md), and smtp-server has no hook for EHLO, NOOP,
 * RSET or unknown commands, whose replies a tarpit must be able to delay.
 *
 * Cheapness, because issue 4 holds tens of thousands of these:
 * - one TimerQueue entry at a time per session (the reply's deadline, the
 *   next byte of a stuttered reply, the client's idle deadline, an ended
 *   session's grace, or the close grace; never past the profile's maxHold
 *   while held), the session itself as target;
 * - socket listeners are shared functions that find the session through a
 *   symbol on the socket, not closures per session or per wait (hold-socket.ts);
 * - while a reply is held the socket is read only until the first chunk (to
 *   notice talking out of turn), then paused, so what a bot keeps sending
 *   stays in the kernel;
 * - nothing grows with hold time: counters, the stage clocks' fixed array
 *   (hold-clock.ts), and bounded line, byte and recipient limits;
 * - what only an ended session needs (hold-ending.ts) is made at the end.
 *
 * What each command gets and changes is hold-commands.ts's; this module
 * holds, writes and ends.
 *
 * Every reply is held by `respond` (the stage's delay, or `delays.other`,
 * times the profile's jitter) and written whole by `send` or trickled by
 * `trickle` (stutter). Closing replies always go out whole: the client is
 * being let go, and maxHold bounds what it costs us.
 *
 * The end reply (a survivor's, the profile's end, maxHold's) closes at once
 * only when it is a 421 (RFC 5321 §3.8). Any other leaves the session ENDED:
 * open for the client's QUIT, every command answered at once by
 * hold-ending.ts, the one timer entry armed for the end grace, and the
 * outcome fixed: what the client does after its answer is not how the hold went.
 */
import type { Socket } from 'node:net';
import { toWire, type Reply } from '../core/reply.js';
import { STAGE_INDEX, STAGES, type Stage } from '../core/stage.js';
import { classifyCommandLine } from '../policy/checks/protocol.js';
import type { TarpitProfile } from '../policy/spec.js';
import { HoldDialogue, R, endReply, hostReply, type Effect } from './hold-commands.js';
import { HoldEnding, closesSession } from './hold-ending.js';
import { StageClock, jittered, otherDelay, stageDelay } from './hold-clock.js';
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
  /** [0, 1) like Math.random (the default): draws the profile's jitter. Tests inject their own. */
  readonly random?: () => number;
}

export function hold(socket: Socket, options: HoldOptions): HoldSession {
  return new HoldSession(socket, options);
}

const WAIT = 0; // a reply is held
const TURN = 1; // waiting for the client's next command
const ENDED = 2; // the end reply is out and was not 421: answering at once until QUIT (hold-ending.ts)
const CLOSING = 3; // last reply written, socket ending
const CLOSED = 4; // 'close' seen, summary delivered
type Phase = typeof WAIT | typeof TURN | typeof ENDED | typeof CLOSING | typeof CLOSED;

const DEFAULT_SIZE = 10 * 1024 * 1024;
/** Seconds a profile without `maxHold` holds a client in all. */
const DEFAULT_MAX_HOLD = 600;
/** How a session at its profile's maxHold ends. */
const MAX_HOLD_OUTCOME: HoldOutcome = 'maxHold';

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
  private readonly reader: LineReader;
  private readonly dialogue: HoldDialogue;
  private readonly clock = new StageClock();
  private readonly random: () => number;
  /** performance.now() at hold(): maxHold counts from here. */
  private readonly startedAt = performance.now();
  private timer: TimerHandle | undefined;

  // Stutter: the reply being trickled and how much of its wire text is out.
  private trickleReply: Reply | undefined;
  private trickleText = '';
  private trickleAt = 0;

  // The reply being held and what it does once written.
  private pending: Reply | 'end' = R.ok;
  private pendingEffect: Effect;
  private pendingClose: HoldOutcome | undefined;
  private waitStage: Stage = 'connect';
  /** Out-of-turn bytes already reported in this wait. */
  private talked = false;
  /** `bytesRead` when out-of-turn talk was last reported: bytes up to here were reported already (as a pregreet, say) and are not reported again as pipelining at a later wait. */
  private reportedTo = 0;
  private draining = false;

  private outcome: HoldOutcome | undefined;
  private hangupStage: Stage | undefined;
  private socketError: string | undefined;
  private commands = 0;
  private errors = 0;
  private bytesRead = 0;
  private firstLine = true;
  private bareLfSeen = false;
  /** Counts per event kind; made at the first event, as most held clients (silent bots) raise none. */
  private events: Record<HoldEventKind, number> | undefined;
  /**
   * The dialogue after the end; set when the session becomes ENDED. Declared
   * only, so the property exists on ended sessions alone: a held one pays no
   * slot for it.
   */
  private declare ending: HoldEnding | undefined;

  constructor(
    private readonly socket: Socket,
    options: HoldOptions,
  ) {
    this.currentProfile = options.profile;
    this.observer = options.observer;
    this.hostname = options.hostname;
    this.limits = resolveLimits(options.limits);
    this.timers = options.timers ?? holdTimers;
    this.classify = options.classify ?? classifyDefault;
    this.random = options.random ?? Math.random;
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

  get envelope(): { sender: string | undefined; recipients: readonly string[] } {
    return { sender: this.dialogue.mailFrom, recipients: this.dialogue.rcpts ?? [] };
  }

  setProfile(profile: TarpitProfile): void {
    this.currentProfile = profile;
  }

  close(reply?: Reply): void {
    this.closeWith(reply ?? this.dropReply(), 'closed');
  }

  /** TimerTarget: the held reply is due, the client's turn timed out, an ended session's grace or a closing socket's ran out. */
  onTimer(): void {
    this.timer = undefined;
    try {
      if (this.phase <= TURN && this.holdExpired()) this.end(endReply(this.currentProfile), MAX_HOLD_OUTCOME);
      else if (this.phase === WAIT) {
        if (this.trickleReply !== undefined) this.trickle(this.trickleReply);
        else this.deliver();
      } else if (this.phase === TURN || this.phase === ENDED) this.closeWith(hostReply.timeout(this.hostname), 'idle');
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
    if (this.phase !== WAIT) {
      this.drain();
      return;
    }
    // A reply is held and the client talks: note it, and let the kernel keep the rest.
    this.socket.pause();
    const decision = this.outOfTurn();
    if (decision === undefined || this.phase !== WAIT) return;
    if (decision === 'drop') return this.drop();
    if (this.trickleReply !== undefined) return this.decideDuringTrickle(decision, this.trickleReply);
    this.override(decision);
    if (typeof decision === 'object' && decision.now === true) {
      this.cancelTimer();
      this.deliver();
    }
  }

  /** Takes the client's buffered lines one by one while it is its turn (or the session has ended); then reads more. */
  private drain(): void {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.phase === TURN || this.phase === ENDED) {
        const line = this.reader.next();
        if (line === undefined) break;
        if (this.phase === ENDED) this.afterEnd(line);
        else this.line(line);
      }
    } finally {
      this.draining = false;
    }
    if (this.phase === TURN || this.phase === ENDED) this.socket.resume();
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
    // Commands without a stage (NOOP, RSET, VRFY, HELP, unknown) wait `delays.other`; QUIT is let go at once.
    const delay = immediate || plan.quit === true ? 0 : plan.stage === undefined ? otherDelay(this.currentProfile) : stageDelay(this.currentProfile, stage);
    this.respond(stage, delay, reply, plan.effect, close);
  }

  /**
   * A line after the end: answered at once, never held, never shown to the
   * observer (the client has its answer); QUIT and the command cap close.
   */
  private afterEnd(line: LineResult): void {
    this.commands++;
    const reply = this.ending!.answer(line);
    if (closesSession(reply)) this.closeWith(reply, undefined);
    else this.send(reply);
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
    if (this.holdExpired()) {
      // A client that keeps talking never lets a timer fire: the budget is checked per reply too.
      this.end(endReply(this.currentProfile), MAX_HOLD_OUTCOME);
      return;
    }
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
    delay = jittered(delay, this.currentProfile.jitter ?? 0, this.random);
    if (delay <= 0) {
      this.deliver();
      return;
    }
    this.arm(delay * 1000);
    // Read until the first byte to notice talking out of turn; after that the kernel keeps it.
    if (this.talked) this.socket.pause();
    else this.socket.resume();
  }

  /** The held reply is due: write it and let the client talk, or close. */
  private deliver(): void {
    if (this.mayRelay()) return this.relay();
    this.settle();
    const pending = this.pending;
    if (pending === 'end') {
      const reply = this.observer?.onSurvived?.(this) ?? endReply(this.currentProfile);
      if (this.phase === WAIT) this.end(reply, 'survived');
      return;
    }
    if (this.pendingClose !== undefined) {
      this.closeWith(pending, this.pendingClose);
      return;
    }
    if ((this.currentProfile.stutter ?? 0) > 0) {
      this.trickleReply = pending;
      this.trickleText = toWire(pending);
      this.trickleAt = 0;
      // Nagle would hold each byte until the previous one is acknowledged, and
      // the client's delayed ACK would then bunch them: stutter means one byte a tick.
      this.socket.setNoDelay(true);
      // Read until the first byte, as during a delay: talking while we trickle is out of turn.
      if (!this.talked) this.socket.resume();
      this.trickle(pending);
      return;
    }
    this.send(pending);
    this.replied(pending);
  }

  /** A reply is out: its 2xx changes the dialogue, and it is the client's turn. */
  private replied(pending: Reply): void {
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
    this.arm(this.limits.idleTimeout * 1000);
    this.drain();
  }

  /**
   * Stutter: writes the next character of the trickled reply (a byte: replies
   * are ASCII) and comes back in 1/rate s through the shared timer queue; the
   * stage stays in WAIT, so the trickle counts as held time and the next
   * command is not read before the last byte is out.
   */
  private trickle(reply: Reply): void {
    const rate = this.currentProfile.stutter ?? 0;
    // A profile switched to no stutter mid-reply gets the rest at once.
    const end = rate > 0 ? this.trickleAt + 1 : this.trickleText.length;
    this.write(this.trickleText.slice(this.trickleAt, end));
    this.trickleAt = end;
    if (this.phase !== WAIT) return;
    if (this.trickleAt < this.trickleText.length) {
      this.arm(1000 / rate);
      return;
    }
    this.stopTrickle();
    this.settle();
    this.replied(reply);
  }

  /**
   * The client talked while we trickled: the reply is partly out, so an
   * observer's reply cannot replace it. A close writes the rest and then the
   * closing reply (the client sees whole lines); `now` writes the rest at once;
   * anything else waits for the next command.
   */
  private decideDuringTrickle(decision: Exclude<Decision, 'drop'>, reply: Reply): void {
    if (typeof decision !== 'object') return;
    if (decision.close === true) {
      this.closeWith(decision.reply, 'dropped');
    } else if (decision.now === true) {
      this.cancelTimer();
      this.flushTrickle();
      if (this.phase !== WAIT) return;
      this.settle();
      this.replied(reply);
    }
  }

  private flushTrickle(): void {
    if (this.trickleReply === undefined) return;
    const rest = this.trickleText.slice(this.trickleAt);
    this.stopTrickle();
    this.write(rest);
  }

  private stopTrickle(): void {
    this.trickleReply = undefined;
    this.trickleText = '';
    this.trickleAt = 0;
  }

  /** Schedules this session's one timer entry, never past the profile's maxHold. */
  private arm(ms: number): void {
    const left = this.startedAt + (this.currentProfile.maxHold ?? DEFAULT_MAX_HOLD) * 1000 - performance.now();
    this.timer = this.timers.schedule(this, Math.min(ms, Math.max(0, left)));
  }

  private holdExpired(): boolean {
    // 1 ms of slack: a timer armed for the deadline fires at it, not after it.
    return performance.now() >= this.startedAt + (this.currentProfile.maxHold ?? DEFAULT_MAX_HOLD) * 1000 - 1;
  }

  /** Writes a whole reply (closing ones too: they are never trickled). */
  private send(reply: Reply): void {
    this.write(toWire(reply));
  }

  /** The one place bytes are written to the client. */
  private write(text: string): void {
    const socket = this.socket;
    if (!socket.writable || text === '') return;
    socket.write(text);
    if (socket.writableLength > this.limits.maxUnread && this.phase < CLOSING) {
      // It does not read what we say: nothing more to learn, and our heap would hold it.
      this.settle();
      if (this.phase !== ENDED) this.outcome = 'abuse';
      this.cancelTimer();
      this.phase = CLOSING;
      socket.destroy();
    }
  }

  private outOfTurn(): Decision | undefined {
    if (this.talked) return undefined;
    this.talked = true;
    if (this.bytesRead <= this.reportedTo) return undefined;
    this.reportedTo = this.bytesRead;
    return this.raise(this.currentStage === 'connect' ? 'pregreet' : 'pipelining', this.reader.peek(100), this.reader.buffered);
  }

  private raise(kind: HoldEventKind, line?: string, bytes?: number): Decision | undefined {
    const events = (this.events ??= { pregreet: 0, pipelining: 0, bareLf: 0, nonSmtp: 0 });
    events[kind]++;
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

  // --- the greet wait's hand-over (`end: relay`) ---

  /** The banner is due, nothing was said, and the profile and the observer let the client go to the relay path. */
  private mayRelay(): boolean {
    return (
      this.currentStage === 'connect' &&
      this.pendingEffect === 'banner' &&
      this.pendingClose === undefined &&
      this.bytesRead === 0 &&
      !this.talked &&
      this.currentProfile.end.kind === 'relay' &&
      this.observer?.onRelay !== undefined &&
      this.observer.mayRelay?.(this) === true &&
      this.phase === WAIT
    );
  }

  /**
   * Lets go of the socket, paused and with nothing read (`bytesRead` is 0),
   * so the relay path starts from a clean connection and writes its own
   * banner. The session ends here without `onClose`.
   */
  private relay(): void {
    this.settle();
    this.cancelTimer();
    this.outcome = 'relayed';
    this.phase = CLOSED;
    this.socket.pause();
    detach(this.socket);
    const summary = this.summary();
    try {
      this.observer?.onRelay?.(this.socket, summary);
    } catch (err) {
      this.report(err);
      this.socket.destroy();
    }
  }

  // --- ending ---

  /**
   * The end reply. After a 421 the server closes (RFC 5321 §3.8); after any
   * other it may not on its own initiative, so the session stays open, ENDED,
   * for the client's QUIT: answered at once (hold-ending.ts), for at most the
   * end grace. The outcome is fixed here.
   */
  private end(reply: Reply, outcome: HoldOutcome): void {
    if (closesSession(reply)) return this.closeWith(reply, outcome);
    if (this.phase >= ENDED) return;
    this.settle();
    this.cancelTimer();
    this.outcome = outcome;
    this.phase = ENDED;
    this.ending = new HoldEnding(reply, this.hostname, this.limits.endCommands);
    // A reply half trickled is finished first, so the client reads whole lines.
    this.flushTrickle();
    this.send(reply);
    if (this.phase !== ENDED) return;
    // Armed once, not per command: a NOOP every few seconds cannot stretch it. Not capped by maxHold, which bounds
    // the hold, and the hold is over.
    this.timer = this.timers.schedule(this, this.limits.endGrace * 1000);
    // Lines the client sent while the end reply was held (a QUIT pipelined behind DATA) are answered now, in order.
    this.drain();
  }

  /**
   * Writes a last reply (if any), ends the socket and destroys it once flushed.
   * `outcome` is how the hold ended; after the end it is kept whatever the
   * caller says (undefined, a timeout, a shutdown, a fault): the client was
   * being let go, and the end said how the hold went.
   */
  private closeWith(reply: Reply | undefined, outcome: HoldOutcome | undefined): void {
    if (this.phase >= CLOSING) return;
    this.settle();
    this.cancelTimer();
    if (this.phase !== ENDED && outcome !== undefined) this.outcome = outcome;
    // A reply half trickled is finished first, so the client reads whole lines.
    this.flushTrickle();
    if (reply !== undefined) this.send(reply);
    if (this.phase >= CLOSING) return;
    this.phase = CLOSING;
    const socket = this.socket;
    if (socket.destroyed) return;
    endSocket(socket);
    this.timer = this.timers.schedule(this, this.limits.closeGrace * 1000);
  }

  /**
   * The client closed (FIN) or the socket failed before we closed it. After
   * the end that is no hang-up: hang-ups measure where clients give up, and
   * this one left with its answer.
   */
  private hangup(err: Error | undefined): void {
    if (err !== undefined) this.socketError ??= (err as NodeJS.ErrnoException).code ?? err.name;
    if (this.phase >= CLOSING) return;
    this.settle();
    this.cancelTimer();
    if (this.phase !== ENDED) {
      this.outcome = 'hangup';
      this.hangupStage = this.currentStage;
    }
    this.phase = CLOSING;
    this.socket.destroy();
  }

  /** 'close': the session is over. Delivers the summary once and lets go of everything. */
  private finish(): void {
    if (this.phase === CLOSED) return;
    if (this.phase !== CLOSING && this.phase !== ENDED) {
      // Destroyed from outside without an error or a FIN we saw (after the end, the end's outcome stands).
      this.settle();
      this.outcome = 'hangup';
      this.hangupStage = this.currentStage;
    }
    this.cancelTimer();
    this.phase = CLOSED;
    this.stopTrickle();
    this.reader.clear();
    detach(this.socket);
    const summary = this.summary();
    try {
      this.observer?.onClose?.(summary);
    } catch (err) {
      this.report(err);
    }
  }

  /** An observer (or we) threw: 451 4.3.0 to this client, everyone else goes on (docs/design.md §4.3). */
  private fail(err: unknown): void {
    this.report(err);
    if (this.phase < CLOSING) this.closeWith(R.internal, 'error');
    else if (this.phase === CLOSING) this.socket.destroy();
  }

  private report(err: unknown): void {
    try {
      this.observer?.onError?.(err);
    } catch {
      // The error reporter itself failed; nothing sensible is left to tell.
    }
  }

  // --- bookkeeping ---

  /** Adds the running wait or turn to its stage's clock; time after the end is neither held nor the client's. */
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
      events: { pregreet: 0, pipelining: 0, bareLf: 0, nonSmtp: 0, ...this.events },
    };
  }
}

/** Limits given by the caller, completed from the defaults once per object the caller passes, not once per session. */
const resolvedLimits = new WeakMap<Partial<HoldLimits>, HoldLimits>();

function resolveLimits(given: Partial<HoldLimits> | undefined): HoldLimits {
  if (given === undefined) return DEFAULT_HOLD_LIMITS;
  let limits = resolvedLimits.get(given);
  if (limits === undefined) resolvedLimits.set(given, (limits = Object.freeze({ ...DEFAULT_HOLD_LIMITS, ...given })));
  return limits;
}

function first(a: Decision | undefined, b: Decision | undefined): Decision | undefined {
  return a === undefined || a === 'continue' ? b : a;
}

/** The protocol checks' classifier in the hold's terms: unknown verbs are SMTP, only clearly other protocols are not. */
function classifyDefault(line: string): LineClass {
  return classifyCommandLine(line) === 'non-smtp' ? 'nonSmtp' : 'smtp';
}
