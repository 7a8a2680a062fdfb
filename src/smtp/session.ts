/**
 * What we keep per client session beside smtp-server's own session object:
 * the backend connection it holds, its transactions and their results. It is
 * summarised in one JSON log line when the session ends (docs/design.md §6).
 */
import type { Socket } from 'node:net';
import type { SmtpReplyError } from '../core/errors.js';
import type { Reply } from '../core/reply.js';
import { replyText } from '../core/reply.js';
import { STAGE_INDEX, STAGES, type Stage } from '../core/stage.js';
import type { SessionPolicy } from '../policy/session-policy.js';
import type { BackendConnection } from '../relay/backend-connection.js';
import { round, type StageTimes } from '../tarpit/metrics.js';
import type { Vetted } from './front.js';

export type MessageResult = 'relayed' | 'tempfailed' | 'rejected' | 'aborted';

export interface RecipientRecord {
  readonly address: string;
  readonly reply: string;
}

export interface MessageRecord {
  readonly from: string;
  readonly rcpt: RecipientRecord[];
  result?: MessageResult;
  reply?: string;
  bytes?: number;
}

/**
 * Whether the client hung up, per socket handed to smtp-server, keyed by the
 * session's Vetted (see watchHangup).
 */
const watched = new WeakMap<Vetted, { readonly socket: Socket; readonly hungUp: () => boolean }>();

/** Limits that end a relay session before the client does (issue 12), as smtp_tarpit_limit_hits_total names them. */
export type SessionLimit = 'session_time' | 'data_rate';

/**
 * Tells a hang-up from a QUIT on the relay path. smtp-server has no QUIT hook
 * and its onClose looks the same either way, but the order of the two FINs
 * does not: after QUIT (or any 421) smtp-server ends its side first, so our
 * write side is already ended when the client's FIN arrives; a client that
 * hangs up sends its FIN (or a reset) while our side is still open. The
 * listeners are prepended so no other listener can end our side first.
 * Call it on the raw socket before handing it to smtp-server. Untested after
 * STARTTLS, where smtp-server ends the TLS socket on top of this one.
 */
export function watchHangup(vetted: Vetted, socket: Socket): void {
  let hungUp: boolean | undefined;
  const settle = () => {
    hungUp ??= !socket.writableEnded;
  };
  socket.prependOnceListener('end', settle);
  socket.prependOnceListener('close', settle);
  // The socket too: a deadline ends the session on it (hand-over.ts serverConnection).
  watched.set(vetted, { socket, hungUp: () => hungUp === true });
}

/**
 * The relay path's stage clock (docs/design.md §2), in the hold's terms: a client's
 * turn (our reply → its next command) counts for the stage it was in, so the
 * time to send RCPT after MAIL's 250 is `mail` client time; time our hooks
 * waited on the backend counts for the hook's stage (`relay` for the final
 * reply after the body); a policy delay on an escalated session is held time.
 * smtp-server has no EHLO hook: banner → first MAIL is all `connect`.
 */
class RelayClock {
  /** Milliseconds per stage: client at [i], held at [n + i], backend at [2n + i]. */
  private readonly times = new Array<number>(STAGES.length * 3).fill(0);
  private readonly reached = new Set<Stage>(['connect']);
  private stage: Stage = 'connect';
  /** When the current stage was entered. */
  private entered: number;
  /** Start of the client's running turn; undefined while our hook works. */
  private turn: number | undefined;

  /** `greetWait`: ms a hold held this client at connect before handing it over (already in the past of `start`). */
  constructor(start: number, greetWaitMs = 0) {
    this.turn = this.entered = start;
    this.times[STAGES.length + STAGE_INDEX.connect] = greetWaitMs;
  }

  get current(): Stage {
    return this.stage;
  }

  /** Ends the running client turn, charging it to the stage it was in. */
  private settle(now: number): void {
    if (this.turn !== undefined) this.times[STAGE_INDEX[this.stage]]! += now - this.turn;
    this.turn = undefined;
  }

  /** A command of `stage` arrived: the client's turn ends; `clientTurn` starts another at once (the body). */
  enter(stage: Stage, clientTurn = false): void {
    const now = performance.now();
    this.settle(now);
    this.stage = stage;
    this.entered = now;
    this.reached.add(stage);
    if (clientTurn) this.turn = now;
  }

  /** We replied: the client's turn starts. */
  replied(): void {
    this.turn ??= performance.now();
  }

  /**
   * A backend wait that began at `start` (performance.now ms) just ended: it
   * counts for the current stage, from when that stage began if later (the
   * DATA relay streams the body while the client sends it; only the wait for
   * the final reply after the body is backend time).
   */
  backendSince(start: number): void {
    const now = performance.now();
    this.times[2 * STAGES.length + STAGE_INDEX[this.stage]]! += now - Math.max(start, this.entered);
  }

  /** We delayed our reply on purpose since `start` (an escalated session, policyGate). */
  heldSince(start: number): void {
    this.times[STAGES.length + STAGE_INDEX[this.stage]]! += performance.now() - start;
  }

  /** Seconds held in all. */
  get heldSeconds(): number {
    let ms = 0;
    for (let i = 0; i < STAGES.length; i++) ms += this.times[STAGES.length + i]!;
    return ms / 1000;
  }

  /** Settles the running turn (the session closed) and reads every reached stage, in seconds. */
  finish(): StageTimes {
    this.settle(performance.now());
    const n = STAGES.length;
    const out: Partial<Record<Stage, { client: number; held: number; backend: number }>> = {};
    STAGES.forEach((stage, i) => {
      if (!this.reached.has(stage)) return;
      out[stage] = { client: round(this.times[i]! / 1000), held: round(this.times[n + i]! / 1000), backend: round(this.times[2 * n + i]! / 1000) };
    });
    return out;
  }
}

export class RelaySession {
  /** When the connection began: before the hand-over for a client that sat a greet wait out, so its duration counts the wait. */
  readonly startedAt: number;
  backend: BackendConnection | undefined;
  /** Hooks in flight: a shutdown waits for these so it never cuts a transaction. */
  pending = 0;
  readonly clock: RelayClock;
  readonly messages: MessageRecord[] = [];
  /** Recipients the backend refused with 5xx in this session (recipient harvesting). */
  rejectedRecipients = 0;
  readonly id: string;
  readonly address: string;
  readonly port: number;
  /** The limit that ended the session, once one did, and its reply: the last the client gets. */
  limit: SessionLimit | undefined;
  ending: SmtpReplyError | undefined;
  /** The session deadline passed while the backend had the message's final dot: the session ends once that reply is out. */
  timeUpAfterReply = false;
  /** Given up once the session ended: a wait for a backend connection stops with it. */
  readonly abort = new AbortController();
  /** The session deadline's timer (limits.sessionTimeout). */
  deadline: NodeJS.Timeout | undefined;
  /** Stops the running message's DATA deadline and fails its body (set while a body streams). */
  cutBody: ((error: SmtpReplyError) => void) | undefined;

  constructor(readonly vetted: Vetted) {
    const now = performance.now();
    const wait = vetted.greetWait;
    this.startedAt = wait === undefined ? now : now - wait.seconds * 1000;
    this.clock = new RelayClock(now, wait === undefined ? 0 : wait.held * 1000);
    this.id = vetted.id;
    this.address = vetted.remoteAddress;
    this.port = vetted.remotePort;
  }

  /** The stage the session is in: the last hook's, or `relay` after the body. */
  get stage(): Stage {
    return this.clock.current;
  }

  /** The socket smtp-server serves this session on (watchHangup); undefined when nothing watched it. */
  get socket(): Socket | undefined {
    return watched.get(this.vetted)?.socket;
  }

  /** The client closed without QUIT (watchHangup); false when nothing watched its socket. */
  get hungUp(): boolean {
    return watched.get(this.vetted)?.hungUp() ?? false;
  }

  /** The session's standing with the policy it started with. */
  get policy(): SessionPolicy {
    return this.vetted.policy;
  }

  get current(): MessageRecord | undefined {
    return this.messages[this.messages.length - 1];
  }

  startMessage(from: string): MessageRecord {
    const record: MessageRecord = { from, rcpt: [] };
    // Bounded: a client may loop MAIL/RSET forever; the log keeps the last 50.
    if (this.messages.length >= 50) this.messages.shift();
    this.messages.push(record);
    return record;
  }

  finishMessage(result: MessageResult, reply: Reply | string, bytes?: number): void {
    const current = this.current;
    if (!current || current.result) return;
    current.result = result;
    current.reply = typeof reply === 'string' ? reply : `${reply.code} ${replyText(reply)}`;
    if (bytes !== undefined) current.bytes = bytes;
  }

  elapsedSeconds(): number {
    return (performance.now() - this.startedAt) / 1000;
  }
}
