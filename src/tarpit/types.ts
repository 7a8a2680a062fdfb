/**
 * What the hold (src/tarpit/hold.ts) tells its observer and what the observer
 * answers. The hold owns delays, reading and the socket; the observer (the
 * policy layer) owns every judgement: it sees each protocol event and each
 * command with the reply the hold would give, and may replace that reply,
 * close, or drop.
 */
import type { Socket } from 'node:net';
import type { Reply } from '../core/reply.js';
import type { Stage } from '../core/stage.js';
import type { TarpitProfile } from '../policy/spec.js';

/**
 * Misbehaviour the hold notices (issue 3, protocol abuse):
 * `pregreet`: bytes before the banner; `pipelining`: bytes while a later reply
 * is held (we never offer PIPELINING); `bareLf`: a command ended in LF alone;
 * `nonSmtp`: the session's first command is not SMTP (an HTTP request, say).
 */
export const HOLD_EVENT_KINDS = ['pregreet', 'pipelining', 'bareLf', 'nonSmtp'] as const;
export type HoldEventKind = (typeof HOLD_EVENT_KINDS)[number];

export interface HoldEvent {
  readonly kind: HoldEventKind;
  /** The session's stage when it happened. */
  readonly stage: Stage;
  /** For `nonSmtp`: the offending line; for `pregreet` and `pipelining`: the start of what was sent. Cut to 100 characters. */
  readonly line?: string;
  /** For `pregreet` and `pipelining`: bytes sent out of turn so far (what this wait has read). */
  readonly bytes?: number;
}

export interface HoldCommand {
  /** Upper-cased first word (`MAIL`); the whole line when it has no space. */
  readonly verb: string;
  /** The rest of the line, trimmed (`FROM:<a@example.org> SIZE=10`). */
  readonly arg: string;
  /** The session's stage when the command arrived. */
  readonly stage: Stage;
  /**
   * What the hold will answer if the observer says `continue`: a reply (250,
   * 503, 500…), or `'end'` for an accepted DATA, whose answer is the end
   * action (the DATA wait, then `onSurvived`).
   */
  readonly reply: Reply | 'end';
}

/**
 * The observer's answer to an event or a command.
 * - `continue` (or undefined): the hold's own reply, after the stage's delay.
 * - `{ reply }`: this reply instead, after the stage's delay (`now`: at once);
 *   `close`: close after writing it. For an event during a wait it replaces
 *   the reply being held. Never 354: the hold takes no body.
 * - `drop`: 421 at once, then close.
 * A command line whose event (bareLf, nonSmtp) already got a reply or a drop
 * is not reported again through onCommand.
 */
export type Decision = 'continue' | 'drop' | { readonly reply: Reply; readonly close?: boolean; readonly now?: boolean };

/** How a hold ended. */
export const HOLD_OUTCOMES = [
  /** Sat the DATA wait out; got `onSurvived`'s reply (what it did after that reply, QUIT or not, does not change this). */
  'survived',
  /** Sent QUIT before the end reply. */
  'quit',
  /** Closed or reset the connection first. */
  'hangup',
  /** The observer said `drop`, or a reply with `close`. */
  'dropped',
  /** Silent past the idle timeout when it was its turn. */
  'idle',
  /** More protocol errors than `maxErrors`. */
  'errors',
  /** Sent more than `maxBytes`, or stopped reading our replies. */
  'abuse',
  /** An observer threw; the client got 451 4.3.0. */
  'error',
  /** `session.close()` from outside (shutdown, a cap). */
  'closed',
  /** Held for the profile's `maxHold` in all; got the profile's end reply, not allowlisted (and, as for `survived`, whatever followed it does not change this). */
  'maxHold',
  /** Sat the greet wait of an `end: relay` profile out silently; the socket went to the relay path (`onRelay`). */
  'relayed',
] as const;
export type HoldOutcome = (typeof HOLD_OUTCOMES)[number];

/** Held or client seconds per stage; only stages the hold meets appear. */
export type StageSeconds = Partial<Record<Stage, number>>;

export interface HoldSummary {
  readonly outcome: HoldOutcome;
  /** Furthest stage reached (`quit` does not count: `outcome` says so). */
  readonly stage: Stage;
  /** The stage the client hung up in, when outcome is `hangup`: never after the end reply (a client that leaves with its answer did not give up). */
  readonly hangup?: Stage;
  /** The socket error that ended it (`ECONNRESET`), if one did. */
  readonly socketError?: string;
  /** Profile in force at the end (it may have been switched). */
  readonly profile: string;
  /** Seconds from hold() to close (the time after the end reply, waiting for QUIT, too). */
  readonly seconds: number;
  /** Seconds we deliberately held replies, in all and per stage (never after the end reply: nothing is held then). */
  readonly heldSeconds: number;
  readonly held: StageSeconds;
  /** Seconds the client took to send its commands, per stage (its turn: our reply → its line), up to the end reply. */
  readonly client: StageSeconds;
  /** Command lines received (too-long lines included), after the end reply too. */
  readonly commands: number;
  /** Protocol errors up to the end reply (after it nothing is judged: the end grace and `endCommands` bound it). */
  readonly errors: number;
  readonly bytesRead: number;
  readonly helo?: string;
  readonly mailFrom?: string;
  /** RCPT addresses in the order sent, at most `limits.maxRecipients`. */
  readonly rcpts: readonly string[];
  /** Every RCPT command, beyond the list's bound too. */
  readonly rcptCount: number;
  /** Each event kind's count. */
  readonly events: Readonly<Record<HoldEventKind, number>>;
}

/** A session as an observer sees it: enough to escalate or end it. */
export interface HoldControl {
  readonly stage: Stage;
  readonly profile: TarpitProfile;
  readonly closed: boolean;
  /** The envelope the client sent so far (MAIL FROM's address, every RCPT's, whatever their replies): what a survivor was deferred for. */
  readonly envelope: { readonly sender: string | undefined; readonly recipients: readonly string[] };
  /** Takes effect at the next wait; the wait in progress keeps its deadline. */
  setProfile(profile: TarpitProfile): void;
  /** Writes the reply (default 421) at once and closes; outcome `closed` (a session past its end reply keeps its outcome). */
  close(reply?: Reply): void;
}

export interface HoldObserver {
  onEvent?(event: HoldEvent, session: HoldControl): Decision | undefined;
  onCommand?(command: HoldCommand, session: HoldControl): Decision | undefined;
  /**
   * The client sat the DATA wait out: the reply it gets instead of 354.
   * Default: the profile's end (see `endReply`). A 421 closes at once; after
   * any other the connection stays open for the client's QUIT (RFC 5321 §3.8,
   * hold-ending.ts).
   */
  onSurvived?(session: HoldControl): Reply;
  /**
   * The greet wait of a profile that ends in `relay` is over and the client
   * said nothing: may it go to the relay path now (true), or is it held on?
   */
  mayRelay?(session: HoldControl): boolean;
  /**
   * After `mayRelay` said yes: the hold has let go of the socket (paused, its
   * listeners and timer gone, no byte read, no banner written) and the
   * observer owns it. Instead of `onClose`: the relay path logs the session.
   */
  onRelay?(socket: Socket, summary: HoldSummary): void;
  /** Exactly once per session, after the socket closed, whatever ended it (unless handed over: `onRelay`). */
  onClose?(summary: HoldSummary): void;
  /** The observer (or the hold) threw; the session answers 451 4.3.0 and closes. Wire this to the trap's counter and log. */
  onError?(err: unknown): void;
}

export interface HoldLimits {
  /** Longest command line, bytes, CRLF included; longer gets 500 and counts as an error. */
  readonly maxLineLength: number;
  /** Protocol errors (500, 501, 502, 503, too-long lines) answered before the next one gets 421 and a close. */
  readonly maxErrors: number;
  /** Seconds the client has to send a whole command line when it is its turn; then 421 and close. */
  readonly idleTimeout: number;
  /** Bytes read from the client in the whole session; past it, 421 and close. */
  readonly maxBytes: number;
  /** Recipients recorded and accepted (RFC 5321 §4.5.3.1.8 wants at least 100); more get 452. */
  readonly maxRecipients: number;
  /** Bytes of our replies the client has not read before we give up on it. */
  readonly maxUnread: number;
  /** Seconds a closing socket gets to flush its last reply before it is destroyed. */
  readonly closeGrace: number;
  /**
   * Seconds a session whose end reply was not a 421 stays open for the
   * client's QUIT (RFC 5321 §3.8), counted from the end reply and never
   * extended by a command; then 421 and close (hold-ending.ts).
   */
  readonly endGrace: number;
  /** Commands answered after the end reply, QUIT aside; the next one gets 421 and a close. */
  readonly endCommands: number;
}

export const DEFAULT_HOLD_LIMITS: HoldLimits = Object.freeze({
  maxLineLength: 4096,
  maxErrors: 10,
  idleTimeout: 60,
  maxBytes: 64 * 1024,
  maxRecipients: 100,
  maxUnread: 16 * 1024,
  closeGrace: 5,
  endGrace: 10,
  endCommands: 10,
});

/** What `classify` says about a session's first command line. */
export type LineClass = 'smtp' | 'nonSmtp';
