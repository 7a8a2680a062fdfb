/**
 * smtp-server's hooks for clean sessions: each relays one command to the
 * session's own backend connection and answers the client with the backend's
 * reply, so the client sees 250 only after the backend said 250 (docs/design.md §4.1).
 * All hooks run through the trap (src/trap).
 */
import type { Readable } from 'node:stream';
import type { SMTPServerAddress, SMTPServerDataStream, SMTPServerSession } from 'smtp-server';
import { replyError, SmtpReplyError } from '../core/errors.js';
import { replyText, type Reply } from '../core/reply.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../metrics/logger.js';
import { limitHitsTotal, messagesTotal, recipientsTotal, sessionDuration } from '../metrics/registry.js';
import { zeroSeries } from '../metrics/zero-series.js';
import type { BackendConnection, MailParams } from '../relay/backend-connection.js';
import type { BackendPool } from '../relay/pool.js';
import type { Trap } from '../trap/trap.js';
import type { Stage } from '../core/stage.js';
import { DataGuard } from './data-guard.js';
import { mailParams, wireAddress } from './envelope.js';
import { DataRateWatch } from './data-rate.js';
import type { Vetted } from './front.js';
import { serverConnection } from './hand-over.js';
import { injectFault, injectFaultSync, type FaultPlan } from './faults.js';
import { RelaySession, type SessionLimit } from './session.js';
import { clientGroup } from '../state/client-group.js';
import { recordSessionTiming } from '../tarpit/metrics.js';
import { jittered, stageDelay } from '../tarpit/hold-clock.js';
import { greylistDefers } from '../policy/checks/greylist.js';
import type { SessionOutcome } from '../state/store.js';

// The outcomes of messages and recipients, and the limits a relay session meets: series from the start (zero-series.ts).
zeroSeries(messagesTotal, (['relayed', 'tempfailed', 'rejected'] as const).map((result) => ({ result })));
zeroSeries(recipientsTotal, (['accepted', 'tempfailed', 'rejected'] as const).map((result) => ({ result })));
zeroSeries(limitHitsTotal, ['recipients', 'message_size', 'bare_line_ending', 'session_time', 'data_rate'].map((limit) => ({ limit })));

export interface HandlerDeps {
  readonly config: Config;
  readonly pool: BackendPool;
  readonly trap: Trap;
  readonly logger: Logger;
  /** Sessions the front door vetted and handed over, by session id. */
  readonly vetted: ReadonlyMap<string, Vetted>;
  readonly faults?: FaultPlan | undefined;
  readonly isShuttingDown: () => boolean;
}

/**
 * A failure reply from the backend, passed through as it is, except 421: that
 * closes only the backend connection (released by onBackend), and passed on it
 * would make smtp-server close the client's session too. The client gets 451
 * and may go on; its next MAIL takes a fresh backend connection.
 */
function passThrough(reply: Reply): SmtpReplyError {
  if (reply.code === 421) return replyError('TARPIT_ERR_BACKEND_LOST');
  return new SmtpReplyError('TARPIT_ERR_BACKEND_REPLY', reply);
}

/** A MAIL the backend has not heard yet: a greylisted session's sender waits for its first recipient that passes. */
interface DeferredMail {
  /** smtp-server's form, for the policy (greylisting's triplet). */
  readonly from: string;
  /** As the client wrote it, for the backend (src/smtp/envelope.ts). */
  readonly wire: string;
  readonly params: MailParams;
}

function isPositive(reply: Reply): boolean {
  return reply.code >= 200 && reply.code < 300;
}

export class RelayHandlers {
  readonly sessions = new Map<string, RelaySession>();
  /**
   * Sessions that greylisting may defer: their MAIL waits here until a
   * recipient passes, so a greylisted client never takes a backend
   * connection (one per session, XCLIENT) for a transaction that gets no
   * recipient. Beside the session, not in it: only greylisting needs it.
   */
  private readonly deferredMail = new WeakMap<RelaySession, DeferredMail>();
  /** Sessions that delivered at least one message (the backend said 250 to its data): their network's reputation. */
  private readonly delivered = new WeakSet<RelaySession>();

  /** The client network a pool share counts (tarpit.groupIpv4/groupIpv6), built once. */
  private readonly groups: { readonly ipv4: number; readonly ipv6: number };
  private readonly sessionTimeReason: string;

  constructor(private readonly deps: HandlerDeps) {
    this.groups = { ipv4: deps.config.tarpit.groupIpv4, ipv6: deps.config.tarpit.groupIpv6 };
    this.sessionTimeReason = `session open longer than limits.sessionTimeout (${deps.config.limits.sessionTimeout} s)`;
  }

  /** The hooks, wrapped by the trap, ready for `new SMTPServer({...})`. */
  hooks() {
    const { trap } = this.deps;
    const ctx = (...args: unknown[]) => ({ sessionId: args.find(isSession)?.id });
    return {
      onConnect: trap.hook('connect', ctx, (session: SMTPServerSession) => this.connect(session)),
      onMailFrom: trap.hook('mail', ctx, (address: SMTPServerAddress, session: SMTPServerSession) => this.track(session, () => this.mailFrom(address, session))),
      onRcptTo: trap.hook('rcpt', ctx, (address: SMTPServerAddress, session: SMTPServerSession) => this.track(session, () => this.rcptTo(address, session))),
      onData: trap.dataHook(
        (_stream: Readable, session: SMTPServerSession) => ({ sessionId: session.id }),
        (stream: Readable, session: SMTPServerSession) => this.track(session, () => this.data(stream as SMTPServerDataStream, session)),
      ),
      onClose: trap.guard('quit', (session: SMTPServerSession) => this.close(session)),
    };
  }

  private async connect(session: SMTPServerSession): Promise<void> {
    const vetted = this.deps.vetted.get(session.id);
    if (!vetted) throw new Error(`session ${session.id} reached smtp-server without a verdict`);
    const rs = new RelaySession(vetted);
    this.sessions.set(session.id, rs);
    this.armDeadline(rs);
    await injectFault(this.deps.faults, 'connect', { remoteAddress: session.remoteAddress });
  }

  /** limits.sessionTimeout, counted from the connect-stage checks: vetting and a greet wait count too. */
  private armDeadline(rs: RelaySession): void {
    const timeout = this.deps.config.limits.sessionTimeout;
    const left = timeout * 1000 - (performance.now() - rs.policy.since);
    // The socket keeps the process alive while the session lasts; the deadline need not.
    rs.deadline = setTimeout(() => this.expireGuarded(rs, 'session_time', this.sessionTimeReason), Math.max(0, left)).unref();
  }

  private session(session: SMTPServerSession): RelaySession {
    const rs = this.sessions.get(session.id);
    if (!rs) throw new Error(`no relay state for session ${session.id}`);
    return rs;
  }

  /** Counts a hook in flight, so shutdown waits for it (docs/design.md §4.1). */
  private async track<R>(session: SMTPServerSession, fn: () => Promise<R>): Promise<R> {
    const rs = this.sessions.get(session.id);
    if (rs) rs.pending++;
    try {
      return await fn();
    } catch (err) {
      // A session a limit ended has had its last reply (expire): whatever the hook failed with since is that end's
      // doing (its backend dropped, its body cut), not a fault of ours for the trap to count.
      if (rs?.ending !== undefined) throw rs.ending;
      throw err;
    } finally {
      if (rs) {
        rs.pending--;
        rs.clock.replied();
        // After the hook's own reply, which smtp-server writes as soon as this promise settles.
        if (rs.timeUpAfterReply && rs.pending === 0) {
          setImmediate(() => this.expireGuarded(rs, 'session_time', this.sessionTimeReason));
        }
      }
    }
  }

  private async mailFrom(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const rs = this.session(session);
    rs.clock.enter('mail');
    await injectFault(this.deps.faults, 'mail', { remoteAddress: rs.address, sender: address.address });
    if (this.deps.isShuttingDown()) throw replyError('TARPIT_ERR_SHUTTING_DOWN');
    // smtp-server has no HELO hook: the name is checked at the first MAIL.
    rs.vetted.engine.helo(rs.policy, session.hostNameAppearsAs);
    await this.policyGate(rs, 'mail');
    // The backend and the log get the client's own bytes: smtp-server turned A-labels into Unicode (src/smtp/envelope.ts).
    const wire = wireAddress(address);
    rs.startMessage(wire);
    this.deferredMail.delete(rs);
    // A client already rejected answers for it at a later stage (rejectAt):
    // the backend need not hear from it at all.
    if (rs.policy.verdict === 'reject') return;
    const params = mailParams(address);
    // Greylisting decides per recipient: the backend hears the sender with the first recipient that passes.
    if (rs.vetted.engine.greylistExempt(rs.policy) === undefined) {
      this.deferredMail.set(rs, { from: address.address, wire, params });
      return;
    }
    await this.backendMail(rs, session, wire, params);
  }

  /** MAIL to the backend (taking the session's backend connection on first use); a refusal ends the message and is passed through. */
  private async backendMail(rs: RelaySession, session: SMTPServerSession, from: string, params: MailParams): Promise<void> {
    let reply: Reply;
    const asked = performance.now();
    try {
      const backend = await this.backendFor(rs, session);
      reply = await this.onBackend(rs, () => backend.mailFrom(from, params));
    } catch (err) {
      if (err instanceof SmtpReplyError) this.finishMessage(rs, err.reply);
      throw err;
    } finally {
      rs.clock.backendSince(asked);
    }
    if (!isPositive(reply)) {
      this.finishMessage(rs, reply);
      throw passThrough(reply);
    }
  }

  private async rcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<void> {
    const rs = this.session(session);
    rs.clock.enter('rcpt');
    await injectFault(this.deps.faults, 'rcpt', { remoteAddress: rs.address, sender: rs.current?.from });
    if (session.envelope.rcptTo.length >= this.deps.config.limits.maxRecipients) {
      limitHitsTotal.inc({ limit: 'recipients' });
      throw replyError('TARPIT_ERR_TOO_MANY_RECIPIENTS');
    }
    await this.policyGate(rs, 'rcpt');
    const deferred = this.deferredMail.get(rs);
    // Before the backend sees the recipient: a greylisted one never reaches it. Once one
    // recipient passed, its network is allowlisted (that is what `passed` and `allowlisted`
    // mean), so the rest of the transaction needs no store round trip.
    if (deferred !== undefined) {
      const decided = rs.vetted.engine.greylist(rs.policy, deferred.from, address.address);
      const outcome = decided instanceof Promise ? await decided : decided;
      if (outcome !== undefined && greylistDefers(outcome)) {
        const error = replyError('TARPIT_ERR_GREYLISTED');
        rs.current?.rcpt.push({ address: wireAddress(address), reply: `${error.reply.code} ${replyText(error.reply)}` });
        recipientsTotal.inc({ result: 'tempfailed' });
        throw error;
      }
      // Kept until the backend took it: a refused MAIL is refused again at the next recipient, never followed by a RCPT without one.
      await this.backendMail(rs, session, deferred.wire, deferred.params);
      this.deferredMail.delete(rs);
    }
    const backend = rs.backend;
    if (!backend) throw replyError('TARPIT_ERR_BACKEND_LOST');
    const asked = performance.now();
    const wire = wireAddress(address);
    const reply = await this.onBackend(rs, () => backend.rcptTo(wire)).finally(() => rs.clock.backendSince(asked));
    rs.current?.rcpt.push({ address: wire, reply: `${reply.code} ${replyText(reply)}` });
    recipientsTotal.inc({ result: replyClass(reply) });
    if (reply.code >= 500) {
      // A shared store answers later: the escalation must be in force for the client's next command.
      const counted = rs.vetted.engine.recipientRejected(rs.policy, ++rs.rejectedRecipients);
      if (counted instanceof Promise) await counted;
    }
    if (!isPositive(reply)) throw passThrough(reply);
  }

  private async data(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const rs = this.session(session);
    rs.clock.enter('data');
    await injectFault(this.deps.faults, 'data', { remoteAddress: rs.address, sender: rs.current?.from });
    await this.policyGate(rs, 'data');
    const backend = rs.backend;
    if (!backend) throw replyError('TARPIT_ERR_BACKEND_LOST');
    const guard = new DataGuard({
      maxBytes: this.deps.config.limits.maxMessageSize,
      bareLineEndings: this.deps.config.smtp.bareLineEndings,
    });
    // smtp-server fails or destroys this stream only when the connection closed before the final dot: the client
    // hung up or reset, an outcome to log (its `hangup`), never a trapped error (docs/design.md §4.6). The typed
    // error fails the body, so the relay drops the backend connection before the dot and the backend discards
    // the partial message. Recorded at once: the session's log line may be written before the backend notices.
    const gone = (cause?: unknown): void => {
      if (guard.destroyed) return;
      rs.finishMessage('aborted', 'none: the connection closed before the end of data', guard.bytes);
      guard.destroy(replyError('TARPIT_ERR_CLIENT_GONE', cause === undefined ? undefined : { cause }));
    };
    stream.on('error', gone);
    stream.once('close', () => {
      if (!stream.readableEnded) gone();
    });
    // The guard may fail before the relay listens (while DATA awaits its 354);
    // the relay reads `guard.errored` then, so the event itself needs no handler.
    guard.on('error', () => undefined);
    // smtp-server sent the 354 before calling us: from here the body is the client's turn, then the final reply the backend's.
    rs.clock.enter('body', true);
    stream.once('end', () => rs.clock.enter('relay'));
    // Closed while the policy gate was awaited: with no error listener then, smtp-server destroyed it without an error.
    if (stream.destroyed && !stream.readableEnded) gone(stream.errored ?? undefined);
    stream.pipe(guard);
    this.watchBody(rs, stream, guard);
    let reply: Reply;
    const asked = performance.now();
    try {
      reply = await this.onBackend(rs, () => backend.data(guard));
    } catch (err) {
      if (guard.violation) limitHitsTotal.inc({ limit: guard.violation });
      stream.unpipe(guard);
      if (err instanceof SmtpReplyError) {
        this.finishMessage(rs, err.reply, guard.bytes);
      }
      // A client that left also costs the session its backend connection (close() releases it), which may fail
      // the relay first: the cause is what the trap must see, not its effect.
      const left = guard.errored;
      if (left instanceof SmtpReplyError && left.code === 'TARPIT_ERR_CLIENT_GONE') throw left;
      throw err;
    } finally {
      rs.clock.backendSince(asked);
    }
    this.finishMessage(rs, reply, guard.bytes);
    if (!isPositive(reply)) throw passThrough(reply);
    return replyText(reply);
  }

  /**
   * The DATA deadline (limits.minDataRate) of one body, and the session
   * deadline's way to cut the body short: failing the guard makes the relay
   * drop the backend connection before the final dot (data-guard.ts), so the
   * backend discards the partial message.
   */
  private watchBody(rs: RelaySession, stream: Readable, guard: DataGuard): void {
    const { minDataRate, dataGrace } = this.deps.config.limits;
    const watch = new DataRateWatch({
      minRate: minDataRate,
      grace: dataGrace,
      bytes: () => guard.bytes,
      // A full guard waits on the backend, not on the client: that time is ours (and bounded by backend.timeouts.dataBlock).
      stalled: () => guard.writableNeedDrain,
      onSlow: (seconds, bytes) =>
        this.expireGuarded(rs, 'data_rate', `message data at ${(bytes / seconds).toFixed(1)} B/s (${bytes} bytes in ${seconds.toFixed(1)} s), below limits.minDataRate (${minDataRate} B/s after ${dataGrace} s)`),
    });
    const done = (): void => {
      watch.stop();
      rs.cutBody = undefined;
    };
    stream.once('end', done);
    stream.once('close', done);
    rs.cutBody = (error) => {
      done();
      this.finishMessage(rs, error.reply, guard.bytes);
      if (!guard.destroyed) guard.destroy(error);
    };
  }

  /** expire() from a timer: a throw there would reach the process, so the trap gets it. */
  private expireGuarded(rs: RelaySession, limit: SessionLimit, reason: string): void {
    try {
      this.expire(rs, limit, reason);
    } catch (err) {
      this.deps.trap.catch(rs.stage, err, { sessionId: rs.id });
    }
  }

  /**
   * Ends a session at a limit (issue 12: the idle timeout measures only
   * silence, so a trickling client would keep its backend connection for
   * ever). The client hears 421 4.4.2 when no reply is owed, else 451 (the
   * reply to its command in flight, or to a message cut in mid-body), and the
   * connection closes. The reply goes out through smtp-server's own write
   * site, and its close() stops the parser, so no final dot is read after
   * it; the reply a hook in flight gives later finds the socket ended and is
   * not written. The backend connection is dropped (a body in flight: before
   * its final dot) and a wait for one is given up.
   */
  private expire(rs: RelaySession, limit: SessionLimit, reason: string): void {
    if (rs.ending !== undefined || this.sessions.get(rs.id) !== rs) return;
    // The backend has the final dot: its reply decides the message, and cutting now could lose a 250 it gave.
    // Bounded by backend.timeouts.dataDone; the session ends once the reply is out (track).
    if (limit === 'session_time' && rs.stage === 'relay' && rs.pending > 0) {
      rs.timeUpAfterReply = true;
      return;
    }
    const owed = rs.pending > 0;
    const error = replyError(limit === 'data_rate' ? 'TARPIT_ERR_DATA_TOO_SLOW' : owed ? 'TARPIT_ERR_SESSION_TIMEOUT_TRANSACTION' : 'TARPIT_ERR_SESSION_TIMEOUT');
    rs.limit = limit;
    rs.ending = error;
    clearTimeout(rs.deadline);
    limitHitsTotal.inc({ limit });
    rs.vetted.engine.trickled(rs.policy, reason);
    rs.cutBody?.(error);
    if (owed) this.finishMessage(rs, error.reply);
    rs.abort.abort(error);
    this.releaseBackend(rs);
    const socket = rs.socket;
    const connection = socket && serverConnection(socket);
    if (connection) {
      connection.send(error.reply.code, replyText(error.reply));
      connection.close();
    } else if (socket) {
      // smtp-server's connection was not found (hand-over.ts): the raw socket, which is what it writes to without TLS.
      socket.end(error.toWire());
      setTimeout(() => socket.destroy(), 1000).unref();
    }
  }

  private close(session: SMTPServerSession): void {
    const rs = this.sessions.get(session.id);
    if (!rs) return;
    this.sessions.delete(session.id);
    clearTimeout(rs.deadline);
    // A hook still waiting for a backend connection stops waiting: nobody is left to use it.
    if (!rs.abort.signal.aborted) rs.abort.abort(replyError('TARPIT_ERR_CLIENT_GONE'));
    this.releaseBackend(rs);
    sessionDuration.observe(rs.elapsedSeconds());
    const stages = rs.clock.finish();
    const hangup = rs.hungUp ? rs.stage : undefined;
    const held = rs.clock.heldSeconds;
    rs.vetted.engine.finish(rs.policy, this.outcome(rs, hangup !== undefined, held > 0));
    recordSessionTiming({ verdict: rs.policy.verdict, stages, hangup, held: held > 0 ? held : undefined });
    this.deps.logger.info(
      {
        session: rs.id,
        client: rs.address,
        port: rs.port,
        helo: session.hostNameAppearsAs || undefined,
        tls: session.secure,
        ...rs.policy.summary(),
        messages: rs.messages,
        lastStage: rs.stage,
        hangup,
        limit: rs.limit,
        stages,
        duration: Number(rs.elapsedSeconds().toFixed(3)),
      },
      'session',
    );
    injectFaultSync(this.deps.faults, 'quit', { remoteAddress: rs.address });
  }

  /**
   * How the session ends for its network's reputation: delivered once the
   * backend took a message; bad when the policy refused it or when it hung
   * up while held (an escalated session's delay: a bot's impatience).
   */
  private outcome(rs: RelaySession, hungUp: boolean, held: boolean): SessionOutcome {
    if (this.delivered.has(rs)) return 'delivered';
    // Cut off for trickling (the DATA rate, the session deadline): how bots pin backend connections.
    if (rs.limit !== undefined) return 'bad';
    const verdict = rs.policy.verdict;
    if (verdict === 'reject' || verdict === 'drop' || (hungUp && held && verdict === 'tarpit')) return 'bad';
    return 'neutral';
  }

  /**
   * What the verdict means at this stage of a relay session: a drop closes
   * (421), a reject answers 5xx from `rejectAt` on, and a session escalated to
   * the tarpit mid-way is held for the profile's delay and then told to retry
   * (451 4.7.1): it gives up its backend connection and is never relayed again.
   */
  private async policyGate(rs: RelaySession, stage: Stage): Promise<void> {
    const action = rs.policy.actionAt(stage);
    if (action.kind === 'continue') return;
    this.releaseBackend(rs);
    if (action.kind === 'refuse') throw action.error;
    const delay = jittered(stageDelay(action.profile, stage), action.profile.jitter ?? 0, Math.random);
    const start = performance.now();
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay * 1000));
    rs.clock.heldSince(start);
    throw replyError('TARPIT_ERR_POLICY_TEMPFAIL');
  }

  /**
   * The session's backend connection: taken from the pool at its first MAIL,
   * given the client's identity once (XCLIENT), reset between transactions.
   */
  private async backendFor(rs: RelaySession, session: SMTPServerSession): Promise<BackendConnection> {
    if (rs.backend && !rs.backend.alive) this.releaseBackend(rs);
    if (rs.backend) {
      const backend = rs.backend;
      if (backend.inTransaction) {
        const reply = await this.onBackend(rs, () => backend.rset());
        if (!isPositive(reply)) {
          this.releaseBackend(rs);
          throw replyError('TARPIT_ERR_BACKEND_LOST');
        }
      }
      return backend;
    }
    // Allow-listed clients are not counted: a partner relay may open many sessions at once.
    const group = rs.policy.trusted ? undefined : clientGroup(rs.address, this.groups);
    const backend = await this.deps.pool.acquire({ group, signal: rs.abort.signal });
    if (rs.ending !== undefined) {
      // Ended while the connection was on its way to us.
      this.deps.pool.release(backend);
      throw rs.ending;
    }
    rs.backend = backend;
    try {
      await backend.xclient({
        address: rs.address,
        port: rs.port,
        name: rs.policy.clientName,
        helo: session.hostNameAppearsAs || undefined,
        proto: session.openingCommand === 'EHLO' ? 'ESMTP' : 'SMTP',
      });
    } catch (err) {
      this.releaseBackend(rs);
      if (err instanceof SmtpReplyError && err.code === 'TARPIT_ERR_BACKEND_NO_XCLIENT') {
        this.deps.pool.markUnready(err.cause instanceof Error ? err.cause.message : err.message);
      }
      throw err;
    }
    return backend;
  }

  /** Runs a backend command; a lost connection is released so the next MAIL gets a new one. */
  private async onBackend(rs: RelaySession, fn: () => Promise<Reply>): Promise<Reply> {
    try {
      const reply = await fn();
      if (reply.code === 421) this.releaseBackend(rs);
      return reply;
    } catch (err) {
      this.releaseBackend(rs);
      throw err;
    }
  }

  private releaseBackend(rs: RelaySession): void {
    const backend = rs.backend;
    if (!backend) return;
    rs.backend = undefined;
    this.deps.pool.release(backend);
  }

  private finishMessage(rs: RelaySession, reply: Reply, bytes?: number): void {
    const outcome = replyClass(reply);
    const result = outcome === 'accepted' ? 'relayed' : outcome;
    if (rs.current?.result === undefined && rs.current) messagesTotal.inc({ result });
    if (result === 'relayed') this.delivered.add(rs);
    rs.finishMessage(result, reply, bytes);
  }
}

function replyClass(reply: Reply): 'accepted' | 'tempfailed' | 'rejected' {
  return isPositive(reply) ? 'accepted' : reply.code >= 500 ? 'rejected' : 'tempfailed';
}

function isSession(value: unknown): value is SMTPServerSession {
  return typeof value === 'object' && value !== null && 'envelope' in value && 'id' in value;
}
