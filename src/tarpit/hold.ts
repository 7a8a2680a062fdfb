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
 *   symbol on the socket, not closures per session or per wait;
 * - while a reply is held the socket is read only until the first chunk (to
 *   notice talking out of turn), then paused, so what a bot keeps sending
 *   stays in the kernel;
 * - nothing grows with hold time: counters, two fixed arrays of stage times,
 *   and bounded line, byte and recipient limits.
 *
 * Every reply is written by `send` after `respond` held it: the one place
 * issue 4's per-reply delays and stutter go.
 */
import type { Socket } from 'node:net';
import { ERRORS } from '../core/errors.js';
import { splitEnhanced, toWire, type Reply } from '../core/reply.js';
import { STAGES, type Stage } from '../core/stage.js';
import type { TarpitProfile } from '../policy/spec.js';
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
  type StageSeconds,
} from './types.js';

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
  /** Is the session's first command line SMTP at all? Default: `classifyLine`. */
  readonly classify?: (line: string) => LineClass;
  /** Bytes the caller already took off the socket (and did not unshift): they arrived before any banner, so they are a pregreet. */
  readonly preread?: Buffer;
  /** SIZE advertised in the EHLO reply, bytes; MAIL with a larger SIZE= gets 552. Default 10 MiB. */
  readonly sizeLimit?: number;
  /** An observer threw; the session answers 451 4.3.0 and closes. Wire this to the trap's counter and log. */
  readonly onError?: (err: unknown) => void;
}

/** Verbs a real SMTP client may open with (RFC 5321 and common extensions); anything else first is `nonSmtp`. */
export const SMTP_VERBS: ReadonlySet<string> = new Set([
  'HELO', 'EHLO', 'MAIL', 'RCPT', 'DATA', 'RSET', 'NOOP', 'QUIT', 'VRFY', 'EXPN', 'HELP',
  'STARTTLS', 'AUTH', 'BDAT', 'ETRN', 'TURN', 'ATRN', 'XCLIENT', 'XFORWARD',
]);

/** Default `classify`: the first word must be an SMTP verb (`GET / HTTP/1.1` is not). */
export function classifyLine(line: string): LineClass {
  return SMTP_VERBS.has(verbOf(line)) ? 'smtp' : 'nonSmtp';
}

/** The reply a survivor gets when no observer answers `onSurvived`: what the profile's end says. */
export function endReply(profile: TarpitProfile): Reply {
  if (profile.end.kind === 'allowlist') return { code: 451, enhanced: '4.7.1', text: 'Service temporarily unavailable, try again later' };
  const { enhanced, text } = splitEnhanced(profile.end.text);
  return { code: profile.end.code, enhanced, text };
}

export function hold(socket: Socket, options: HoldOptions): HoldSession {
  return new HoldSession(socket, options);
}

const WAIT = 0; // a reply is held
const TURN = 1; // waiting for the client's next command
const CLOSING = 2; // last reply written, socket ending
const CLOSED = 3; // 'close' seen, summary delivered
type Phase = typeof WAIT | typeof TURN | typeof CLOSING | typeof CLOSED;

/** What a held reply does once written with a 2xx code. */
type Effect = 'banner' | 'helo' | 'mail' | 'rcpt' | 'rset' | undefined;

interface Plan {
  readonly verb: string;
  readonly arg: string;
  readonly reply: Reply | 'end';
  /** Whose delay the reply waits: undefined answers at once. */
  readonly stage?: Stage;
  readonly effect?: Effect;
  /** A protocol error: counts towards maxErrors. */
  readonly error?: boolean;
  readonly quit?: boolean;
  readonly data?: boolean;
}

const STAGE_INDEX = Object.fromEntries(STAGES.map((s, i) => [s, i])) as Record<Stage, number>;
const MAX_PATH = 256; // RFC 5321 §4.5.3.1.3
const MAX_DOMAIN = 255; // RFC 5321 §4.5.3.1.2
const DEFAULT_SIZE = 10 * 1024 * 1024;
const ADDRESS = String.raw`\s*(?:<([^<>]*)>|([^\s<>]+))(?:\s+(.*))?$`;
const MAIL_RE = new RegExp(`^FROM:${ADDRESS}`, 'i');
const RCPT_RE = new RegExp(`^TO:${ADDRESS}`, 'i');
const SIZE_RE = /(?:^|\s)SIZE=(\d+)/i;
const NOT_IMPLEMENTED = new Set(['EXPN', 'STARTTLS', 'AUTH', 'BDAT', 'ETRN', 'TURN', 'ATRN', 'XCLIENT', 'XFORWARD']);

const R = {
  ok: { code: 250, enhanced: '2.0.0', text: 'Ok' },
  mailOk: { code: 250, enhanced: '2.1.0', text: 'Ok' },
  rcptOk: { code: 250, enhanced: '2.1.5', text: 'Ok' },
  bye: { code: 221, enhanced: '2.0.0', text: 'Bye' },
  vrfy: { code: 252, enhanced: '2.0.0', text: 'Cannot VRFY user, but will accept message and attempt delivery' },
  help: { code: 214, enhanced: '2.0.0', text: 'See RFC 5321' },
  unknown: { code: 500, enhanced: '5.5.2', text: 'Error: command not recognized' },
  tooLong: { code: 500, enhanced: '5.5.2', text: 'Error: line too long' },
  notImplemented: { code: 502, enhanced: '5.5.1', text: 'Error: command not implemented' },
  heloFirst: { code: 503, enhanced: '5.5.1', text: 'Error: send HELO/EHLO first' },
  nestedMail: { code: 503, enhanced: '5.5.1', text: 'Error: nested MAIL command' },
  needMail: { code: 503, enhanced: '5.5.1', text: 'Error: need MAIL command' },
  needRcpt: { code: 503, enhanced: '5.5.1', text: 'Error: need RCPT command' },
  noRcpt: { code: 554, enhanced: '5.5.1', text: 'Error: no valid recipients' },
  tooMany: { code: 452, enhanced: '4.5.3', text: 'Error: too many recipients' },
  tooBig: { code: 552, enhanced: '5.3.4', text: 'Message size exceeds fixed limit' },
  syntaxHelo: { code: 501, enhanced: '5.5.4', text: 'Syntax: EHLO hostname' },
  syntaxMail: { code: 501, enhanced: '5.5.4', text: 'Syntax: MAIL FROM:<address>' },
  syntaxRcpt: { code: 501, enhanced: '5.5.4', text: 'Syntax: RCPT TO:<address>' },
  syntaxData: { code: 501, enhanced: '5.5.4', text: 'Syntax: DATA' },
  badSender: { code: 501, enhanced: '5.1.7', text: 'Bad sender address syntax' },
  badRecipient: { code: 501, enhanced: '5.1.3', text: 'Bad recipient address syntax' },
  internal: { code: ERRORS.TARPIT_ERR_INTERNAL.code, enhanced: ERRORS.TARPIT_ERR_INTERNAL.enhanced, text: ERRORS.TARPIT_ERR_INTERNAL.text },
} as const satisfies Record<string, Reply>;

type HeldSocket = Socket & { [kSession]?: HoldSession };
const kSession = Symbol('holdSession');
const kData = Symbol('data');
const kHangup = Symbol('hangup');
const kFinish = Symbol('finish');

// Listeners shared by every held socket (`this` is the socket): no closures per session.
function onSocketData(this: HeldSocket, chunk: Buffer): void {
  this[kSession]?.[kData](chunk);
}

function onSocketEnd(this: HeldSocket): void {
  this[kSession]?.[kHangup](undefined);
}

function onSocketError(this: HeldSocket, err: Error): void {
  this[kSession]?.[kHangup](err);
}

function onSocketClose(this: HeldSocket): void {
  this[kSession]?.[kFinish]();
}

function verbOf(line: string): string {
  const sp = line.indexOf(' ');
  return (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
}

function destroyOnFinish(this: Socket): void {
  this.destroy();
}

export class HoldSession implements HoldControl, TimerTarget {
  private phase: Phase = WAIT;
  private currentStage: Stage = 'connect';
  private furthest = 0;
  private currentProfile: TarpitProfile;
  private readonly observer: HoldObserver | undefined;
  private readonly hostname: string;
  private readonly limits: HoldLimits;
  private readonly timers: TimerQueue;
  private readonly classify: (line: string) => LineClass;
  private readonly sizeLimit: number;
  private readonly onError: ((err: unknown) => void) | undefined;
  private readonly reader: LineReader;
  private timer: TimerHandle | undefined;

  // The reply being held and what it does once written.
  private pending: Reply | 'end' = R.ok;
  private pendingEffect: Effect;
  private pendingClose: HoldOutcome | undefined;
  private waitStage: Stage = 'connect';
  /** Start (performance.now ms) of the current wait or turn, for the stage clocks. */
  private mark: number;
  /** Out-of-turn bytes already reported in this wait. */
  private talked = false;
  private draining = false;

  private outcome: HoldOutcome | undefined;
  private hangupStage: Stage | undefined;
  private socketError: string | undefined;
  private readonly started: number;
  /** Milliseconds per stage: held at [i], client at [STAGES.length + i]. A plain array: smaller than a typed one this size. */
  private readonly times: number[] = new Array<number>(STAGES.length * 2).fill(0);
  private commands = 0;
  private errors = 0;
  private bytesRead = 0;
  private firstLine = true;
  private bareLfSeen = false;
  private greeted = false;
  private inTransaction = false;
  private accepted = 0;
  private helo: string | undefined;
  private mailFrom: string | undefined;
  private rcpts: string[] | undefined;
  private rcptCount = 0;
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
    this.classify = options.classify ?? classifyLine;
    this.sizeLimit = options.sizeLimit ?? DEFAULT_SIZE;
    this.onError = options.onError;
    this.reader = new LineReader(this.limits.maxLineLength);
    this.started = this.mark = performance.now();

    const held = socket as HeldSocket;
    held[kSession] = this;
    // Explicitly paused, so adding the 'data' listener does not start the flow.
    socket.pause();
    // Stays attached after the session ends: a late reset must never be an unhandled 'error'.
    socket.on('error', onSocketError);
    socket.on('data', onSocketData);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    if (socket.closed) {
      // Gone before we started: 'close' will not come again.
      process.nextTick(onSocketClose.bind(held));
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
      this.respond('connect', this.currentProfile.delays.banner, { code: 220, text: `${this.hostname} ESMTP` }, 'banner', undefined);
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
      else if (this.phase === TURN) this.closeWith({ code: 421, enhanced: '4.4.2', text: `${this.hostname} Error: timeout exceeded` }, 'idle');
      else if (this.phase === CLOSING) this.socket.destroy();
    } catch (err) {
      this.fail(err);
    }
  }

  // --- entry points of the shared socket listeners (onSocketData and co.): symbol-named so only this module reaches them ---

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
      this.closeWith({ code: 421, enhanced: '4.7.0', text: `${this.hostname} Error: too much input` }, 'abuse');
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

    const plan = this.plan(text);
    this.record(plan);
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
    this.respond(stage, immediate || plan.stage === undefined ? 0 : this.delayFor(stage), reply, plan.effect, close);
  }

  /** A protocol error the observer is not asked about (too-long line). */
  private error(reply: Reply): void {
    if (!this.tooManyErrors()) this.respond(this.currentStage, 0, reply, undefined, undefined);
  }

  /** Counts a protocol error; past maxErrors the session ends with 421 (true). */
  private tooManyErrors(): boolean {
    if (++this.errors <= this.limits.maxErrors) return false;
    this.closeWith({ code: 421, enhanced: '4.7.0', text: `${this.hostname} Error: too many errors` }, 'errors');
    return true;
  }

  /** The hold's own answer to a command line, from the session's state. */
  private plan(text: string): Plan {
    const verb = verbOf(text);
    const arg = text.slice(verb.length).trim();
    switch (verb) {
      case 'EHLO':
      case 'HELO': {
        if (arg === '') return { verb, arg, reply: R.syntaxHelo, stage: 'helo', error: true };
        const reply: Reply =
          verb === 'EHLO'
            ? // No PIPELINING (a client that pipelines anyway shows itself), no STARTTLS, no AUTH: we take no mail here.
              { code: 250, text: `${this.hostname}\nSIZE ${this.sizeLimit}\n8BITMIME\nENHANCEDSTATUSCODES\nSMTPUTF8` }
            : { code: 250, text: this.hostname };
        return { verb, arg, reply, stage: 'helo', effect: 'helo' };
      }
      case 'MAIL': {
        if (!this.greeted) return { verb, arg, reply: R.heloFirst, stage: 'mail', error: true };
        if (this.inTransaction) return { verb, arg, reply: R.nestedMail, stage: 'mail', error: true };
        const m = MAIL_RE.exec(arg);
        if (!m) return { verb, arg, reply: R.syntaxMail, stage: 'mail', error: true };
        if ((m[1] ?? m[2] ?? '').length > MAX_PATH) return { verb, arg, reply: R.badSender, stage: 'mail', error: true };
        const size = SIZE_RE.exec(m[3] ?? '');
        if (size && Number(size[1]) > this.sizeLimit) return { verb, arg, reply: R.tooBig, stage: 'mail' };
        return { verb, arg, reply: R.mailOk, stage: 'mail', effect: 'mail' };
      }
      case 'RCPT': {
        if (!this.inTransaction) return { verb, arg, reply: R.needMail, stage: 'rcpt', error: true };
        const m = RCPT_RE.exec(arg);
        const address = m?.[1] ?? m?.[2] ?? '';
        if (address === '') return { verb, arg, reply: R.syntaxRcpt, stage: 'rcpt', error: true };
        if (address.length > MAX_PATH) return { verb, arg, reply: R.badRecipient, stage: 'rcpt', error: true };
        if (this.accepted >= this.limits.maxRecipients) return { verb, arg, reply: R.tooMany, stage: 'rcpt' };
        return { verb, arg, reply: R.rcptOk, stage: 'rcpt', effect: 'rcpt' };
      }
      case 'DATA':
        if (arg !== '') return { verb, arg, reply: R.syntaxData, stage: 'data', error: true };
        if (!this.inTransaction) return { verb, arg, reply: R.needMail, stage: 'data', error: true };
        if (this.accepted === 0) return { verb, arg, reply: R.noRcpt, stage: 'data' };
        return { verb, arg, reply: 'end', stage: 'data', data: true };
      case 'RSET':
        return { verb, arg, reply: R.ok, effect: 'rset' };
      case 'NOOP':
        return { verb, arg, reply: R.ok };
      case 'QUIT':
        return { verb, arg, reply: R.bye, quit: true };
      case 'VRFY':
        return { verb, arg, reply: R.vrfy };
      case 'HELP':
        return { verb, arg, reply: R.help };
      default:
        if (NOT_IMPLEMENTED.has(verb)) return { verb, arg, reply: R.notImplemented, error: true };
        return { verb, arg, reply: R.unknown, error: true };
    }
  }

  /** What the summary keeps of a command, whatever its reply: names and addresses, bounded. */
  private record(plan: Plan): void {
    if (plan.verb === 'EHLO' || plan.verb === 'HELO') {
      if (plan.arg !== '') this.helo = plan.arg.split(/\s/, 1)[0]!.slice(0, MAX_DOMAIN);
    } else if (plan.verb === 'MAIL') {
      const m = MAIL_RE.exec(plan.arg);
      if (m) this.mailFrom = (m[1] ?? m[2] ?? '').slice(0, MAX_PATH);
    } else if (plan.verb === 'RCPT') {
      this.rcptCount++;
      const m = RCPT_RE.exec(plan.arg);
      const list = (this.rcpts ??= []);
      if (m && list.length < this.limits.maxRecipients) list.push((m[1] ?? m[2] ?? '').slice(0, MAX_PATH));
    }
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
    this.mark = performance.now();
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
    if (pending.code >= 200 && pending.code < 300) this.apply(this.pendingEffect);
    this.turn();
  }

  /** State changes a command makes once its 2xx reply is out. */
  private apply(effect: Effect): void {
    switch (effect) {
      case 'banner':
        this.enter('helo');
        break;
      case 'helo':
        this.greeted = true;
        this.inTransaction = false;
        this.accepted = 0;
        this.enter('mail');
        break;
      case 'mail':
        this.inTransaction = true;
        this.enter('rcpt');
        break;
      case 'rcpt':
        this.accepted++;
        break;
      case 'rset':
        this.inTransaction = false;
        this.accepted = 0;
        if (this.greeted) this.enter('mail');
        break;
      case undefined:
        break;
    }
  }

  private turn(): void {
    this.phase = TURN;
    this.mark = performance.now();
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
    return { code: 421, enhanced: '4.7.0', text: `${this.hostname} Service not available, closing transmission channel` };
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
    // Read and discard what the client still sends, so the close is a FIN the
    // client reads after our reply, not a reset that may discard it.
    socket.resume();
    socket.end();
    socket.once('finish', destroyOnFinish);
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
    const socket = this.socket as HeldSocket;
    socket[kSession] = undefined;
    socket.off('data', onSocketData);
    socket.off('end', onSocketEnd);
    socket.off('close', onSocketClose);
    socket.off('finish', destroyOnFinish);
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
    const now = performance.now();
    const i = this.phase === WAIT ? STAGE_INDEX[this.waitStage] : this.phase === TURN ? STAGES.length + STAGE_INDEX[this.currentStage] : -1;
    if (i >= 0) this.times[i] = (this.times[i] ?? 0) + (now - this.mark);
    this.mark = now;
  }

  private enter(stage: Stage): void {
    this.currentStage = stage;
    // QUIT says nothing about how far the client got; the outcome records it.
    if (stage !== 'quit') this.furthest = Math.max(this.furthest, STAGE_INDEX[stage]);
  }

  private delayFor(stage: Stage): number {
    const d = this.currentProfile.delays;
    switch (stage) {
      case 'connect':
        return d.banner;
      case 'helo':
        return d.helo;
      case 'mail':
        return d.mail;
      case 'rcpt':
        return d.rcpt;
      case 'data':
        return d.data;
      default:
        return 0;
    }
  }

  private cancelTimer(): void {
    if (this.timer !== undefined) {
      this.timers.cancel(this.timer);
      this.timer = undefined;
    }
  }

  private summary(): HoldSummary {
    const held: StageSeconds = {};
    const client: StageSeconds = {};
    let heldMs = 0;
    for (let i = 0; i < STAGES.length; i++) {
      const h = this.times[i] ?? 0;
      const c = this.times[STAGES.length + i] ?? 0;
      heldMs += h;
      if (h > 0) held[STAGES[i]!] = seconds(h);
      if (c > 0) client[STAGES[i]!] = seconds(c);
    }
    return {
      outcome: this.outcome ?? 'hangup',
      stage: STAGES[this.furthest]!,
      ...(this.hangupStage !== undefined && { hangup: this.hangupStage }),
      ...(this.socketError !== undefined && { socketError: this.socketError }),
      profile: this.currentProfile.name,
      seconds: seconds(performance.now() - this.started),
      heldSeconds: seconds(heldMs),
      held,
      client,
      commands: this.commands,
      errors: this.errors,
      bytesRead: this.bytesRead,
      ...(this.helo !== undefined && { helo: this.helo }),
      ...(this.mailFrom !== undefined && { mailFrom: this.mailFrom }),
      rcpts: this.rcpts ?? [],
      rcptCount: this.rcptCount,
      events: { ...this.events },
    };
  }
}

function first(a: Decision | undefined, b: Decision | undefined): Decision | undefined {
  return a === undefined || a === 'continue' ? b : a;
}

function seconds(ms: number): number {
  return Math.round(ms) / 1000;
}
