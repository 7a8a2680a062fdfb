/**
 * The front door (docs/design.md §3 smtp): our own listener accepts every socket,
 * applies the connection caps, reads a PROXY header from trusted load
 * balancers, asks the policy for a first verdict, and then either hands the
 * socket to smtp-server (`server.connect`) for the relay path, gives it to the
 * tarpit's hold (which never relays), or refuses it. Owning the socket first
 * is what lets the tarpit hold it cheaply; it also lets shutdown drain
 * sessions ourselves, since smtp-server's close() knows nothing of sockets it
 * did not accept.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { SMTPServer } from 'smtp-server';
import { replyError, type ErrorCode, type SmtpReplyError } from '../core/errors.js';
import type { Config } from '../config/schema.js';
import type { Logger } from '../metrics/logger.js';
import { connectionsTotal, limitHitsTotal, sessionsActive, tarpitRefusedTotal } from '../metrics/registry.js';
import type { Tally } from '../metrics/tally-counter.js';
import { zeroSeries } from '../metrics/zero-series.js';
import type { CidrList } from '../policy/lists/cidr-list.js';
import type { PolicyEngine } from '../policy/engine.js';
import type { PolicyStore } from '../policy/policy-store.js';
import type { SessionPolicy } from '../policy/session-policy.js';
import { HoldCaps, type HoldCap } from '../tarpit/caps.js';
import type { Trap } from '../trap/trap.js';
import { handOver } from './hand-over.js';
import { watchHangup } from './session.js';
import { ConnectionLimits, type AddressCap } from './limits.js';
import { readProxyHeader } from './proxy-header.js';
import { RefusalLog, type RefusalReason } from './refusal-log.js';

export interface FrontDeps {
  readonly config: Config;
  readonly smtp: SMTPServer;
  readonly trap: Trap;
  readonly logger: Logger;
  readonly trustedProxies: CidrList;
  /** Hooks in flight for a session id (0 when none, undefined before smtp-server took it). */
  readonly pendingHooks: (sessionId: string) => number | undefined;
  readonly policy: PolicyStore;
  /** Where vetted relay sessions wait for smtp-server's onConnect to pick them up, by session id. */
  readonly vetted: Map<string, Vetted>;
  /** Gives a socket the policy will not relay to the tarpit's hold. */
  readonly hold: (socket: Socket, vetted: Vetted) => void;
}

/** A session after the connect-stage checks: the engine it started with and its standing. */
export interface Vetted {
  readonly id: string;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly engine: PolicyEngine;
  readonly policy: SessionPolicy;
  /** A client handed over from a greet wait (`end: relay`): what the hold already timed, so the relay session's stages and duration start at connect, not at the hand-over. */
  readonly greetWait?: GreetWait;
}

/** Seconds a greet wait took before its hand-over: in all, and held (our delay) at connect. */
export interface GreetWait {
  readonly seconds: number;
  readonly held: number;
}

/** What a connection holds in the front's accounting, released when its socket closes. */
interface Admitted {
  readonly id: string;
  client: string | undefined;
  state: 'vetting' | 'held' | 'relaying';
  /** Counted by the tarpit caps (HoldCaps) while held. */
  capped: boolean;
  /** Its standing with the policy, once vetted: its rate slot is given back at close. */
  policy: SessionPolicy | undefined;
  /** Its places in the caps were given back (at a refusal, before its socket closed). */
  released: boolean;
}

/**
 * A socket's accounting rides on the socket itself, and its listeners are
 * functions shared by every socket: a held client costs no closure, no
 * `once` wrapper and no map entry here (issue 4 holds tens of thousands).
 */
const kAdmitted = Symbol('admitted');
type FrontSocket = Socket & { [kAdmitted]?: Admitted };

/** How long after a socket's close its rate slot is released if no path finished the session. */
const SLOT_SAFETY_MS = 1000;

/** A reset from the client must never reach the process as an unhandled 'error'. */
function ignoreError(): void {}

/** A refused socket's 'finish' (its reply is with the kernel): close it, whether or not the client ever reads. */
function destroySelf(this: Socket): void {
  this.destroy();
}

/** Milliseconds a refused socket may take to hand its reply to the kernel before it is destroyed anyway. */
const REFUSAL_WRITE_DEADLINE_MS = 1000;

/** Each cap's refusal: the reply, the counters (tallies: no label lookup per refusal) and the log's reason. */
interface CapRefusalKind {
  readonly code: ErrorCode;
  readonly result: Tally;
  readonly limit: Tally;
  readonly reason: RefusalReason;
}

// What can happen to a connection at the front door, and the states it can be in: series from the start (zero-series.ts).
zeroSeries(
  connectionsTotal,
  ['accepted', 'held', 'refused_cap', 'refused_per_client', 'refused_reserve', 'refused_tarpit_full', 'refused_policy', 'bad_proxy_header', 'shutting_down', 'error'].map((result) => ({ result })),
);
zeroSeries(sessionsActive, (['vetting', 'held', 'relaying'] as const).map((state) => ({ state })));

const CAP_REFUSALS: Record<AddressCap, CapRefusalKind> = {
  connections: { code: 'TARPIT_ERR_TOO_MANY_CONNECTIONS', result: connectionsTotal.tally({ result: 'refused_cap' }), limit: limitHitsTotal.tally({ limit: 'connections' }), reason: 'connections' },
  per_client: { code: 'TARPIT_ERR_TOO_MANY_FROM_CLIENT', result: connectionsTotal.tally({ result: 'refused_per_client' }), limit: limitHitsTotal.tally({ limit: 'per_client' }), reason: 'per_client' },
};

/** The clean reserve is met after vetting (refuseVetted counts its result): only its limit is counted here. */
const RESERVE_HITS = limitHitsTotal.tally({ limit: 'reserve' });

export class Front {
  private readonly server: Server;
  private readonly limits: ConnectionLimits;
  private readonly holdCaps: HoldCaps;
  private readonly refusals: RefusalLog;
  /**
   * Refused sockets whose reply was not with the kernel at once, destroyed by
   * one sweep instead of a timer each: those noted since the last sweep are
   * destroyed by the next, so each gets between one and two intervals.
   */
  private lingering = new Set<Socket>();
  private lingered = new Set<Socket>();
  private readonly lingerSweep: NodeJS.Timeout;
  /** Every socket we accepted and have not seen close, by the id smtp-server's session will carry. */
  private readonly sockets = new Map<string, Socket>();
  private closing = false;
  /** The one 'close' listener of every accepted socket (`this` is the socket). */
  private readonly onSocketClose: (this: FrontSocket) => void;
  /** Session ids: a random per-process prefix and a counter, unique without a syscall per connection. */
  private readonly idPrefix = randomBytes(4).toString('hex');
  private idSeq = 0;

  constructor(private readonly deps: FrontDeps) {
    this.limits = new ConnectionLimits(deps.config.limits, (address) => deps.policy.current.policy.lists.allow.has(address));
    this.holdCaps = new HoldCaps(deps.config.tarpit);
    this.refusals = new RefusalLog(deps.logger);
    this.lingerSweep = setInterval(() => this.sweepLingering(), REFUSAL_WRITE_DEADLINE_MS).unref();
    // pauseOnConnect: nothing is read until smtp-server (or the PROXY reader) wants it.
    this.server = createServer({ pauseOnConnect: true, noDelay: true }, deps.trap.guard('connect', (socket: Socket) => this.accept(socket)));
    this.server.on('error', deps.trap.guard('server', (err: Error) => deps.logger.error({ err }, 'listener error')));
    const closed = (admitted: Admitted): void => this.closed(admitted);
    this.onSocketClose = function (this: FrontSocket) {
      const admitted = this[kAdmitted];
      if (admitted !== undefined) closed(admitted);
    };
  }

  get shuttingDown(): boolean {
    return this.closing;
  }

  get openConnections(): number {
    return this.limits.open;
  }

  listen(): Promise<AddressInfo> {
    const { host, port } = this.deps.config.listen;
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host, port, backlog: this.deps.config.backlog }, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  /**
   * A new socket: the caps that need no more than its address are applied
   * here, synchronously and before anything is allocated for it, so that a
   * flood of refusals costs a few comparisons each (issue 12).
   */
  private accept(socket: FrontSocket): Promise<void> | undefined {
    socket.on('error', ignoreError);
    const peer = socket.remoteAddress ?? '';
    if (this.closing) {
      this.refuse(socket, 'TARPIT_ERR_SHUTTING_DOWN', 'shutting_down');
      this.noteRefusal(peer, 'shutting_down');
      return undefined;
    }
    const overTotal = this.limits.admit();
    if (overTotal !== undefined) return this.refuseAtCap(socket, peer, overTotal);
    const proxied = this.deps.trustedProxies.has(peer);
    if (!proxied) {
      const overClient = this.limits.admitClient(peer);
      if (overClient !== undefined) {
        this.limits.release();
        return this.refuseAtCap(socket, peer, overClient);
      }
    }
    return this.admit(socket, peer, proxied);
  }

  /** A socket inside the caps: tracked, its real client read from a PROXY header if any, then vetted. */
  private async admit(socket: FrontSocket, peer: string, proxied: boolean): Promise<void> {
    const id = `${this.idPrefix}${(++this.idSeq).toString(36)}`;
    this.sockets.set(id, socket);
    sessionsActive.inc({ state: 'vetting' });
    // Filled in as the socket passes each gate; read when it closes.
    // Every field in the literal: added later, they would live in a separate property array.
    const admitted: Admitted = { id, state: 'vetting', client: proxied ? undefined : peer, capped: false, policy: undefined, released: false };
    socket[kAdmitted] = admitted;
    socket.on('close', this.onSocketClose);

    let remoteAddress = peer;
    let remotePort = socket.remotePort ?? 0;
    if (proxied) {
      try {
        const header = await readProxyHeader(socket, { timeoutMs: this.deps.config.proxyProtocol.timeout * 1000 });
        if (header.kind === 'proxied') {
          remoteAddress = header.remoteAddress;
          remotePort = header.remotePort;
        }
      } catch (err) {
        connectionsTotal.inc({ result: 'bad_proxy_header' });
        this.deps.logger.warn({ err, peer: remoteAddress }, 'bad PROXY header from a trusted proxy; closing');
        socket.destroy();
        return;
      }
      const overClient = this.limits.admitClient(remoteAddress);
      if (overClient !== undefined) {
        this.release(admitted);
        this.refuseAtCap(socket, remoteAddress, overClient);
        return;
      }
      admitted.client = remoteAddress;
    }

    // The client waits for its banner while the connect-stage checks run (at
    // most the slowest DNS zone's timeout); its socket stays paused meanwhile.
    const engine = this.deps.policy.current;
    let policy: SessionPolicy;
    try {
      ({ session: policy } = await engine.vet(remoteAddress, { needName: this.deps.config.smtp.reverseLookup, count: true }));
    } catch (err) {
      // Counted and logged by the trap; the client hears a temporary failure before any banner.
      this.deps.trap.catch('connect', err, { sessionId: id });
      return this.refuse(socket, 'TARPIT_ERR_INTERNAL_CONNECT', 'error');
    }
    // A client that hung up during the checks has already fired 'close'.
    if (socket.destroyed) return engine.finish(policy, 'neutral');
    admitted.policy = policy;
    const vetted: Vetted = { id, remoteAddress, remotePort, engine, policy };
    const action = policy.actionAt('connect');
    if (action.kind === 'refuse') return this.refuseVetted(socket, vetted, action.error, 'refused_policy');
    if (policy.held || policy.verdict !== 'pass') {
      // The last slots are for clients we relay: one we would hold is refused there, before any banner.
      const reserve = this.limits.roomForUnrelayed();
      if (reserve !== undefined) {
        RESERVE_HITS.inc();
        return this.refuseVetted(socket, vetted, replyError('TARPIT_ERR_TOO_MANY_CONNECTIONS'), 'refused_reserve', 'reserve');
      }
      // Past a tarpit cap a client we would hold is refused before any banner; clean clients never get here.
      const cap = this.holdCaps.admit(remoteAddress);
      if (cap !== undefined) {
        tarpitRefusedTotal.inc({ cap });
        return this.refuseVetted(socket, vetted, replyError('TARPIT_ERR_TARPIT_FULL'), 'refused_tarpit_full', `tarpit_${cap}`, cap);
      }
      admitted.capped = true;
      // Held, or rejected at a later stage: served by the tarpit, which never relays.
      connectionsTotal.inc({ result: 'held' });
      this.enter(admitted, 'held');
      // The tarpit closes its own on shutdown; the drain below is for relay sessions.
      this.sockets.delete(id);
      this.deps.hold(socket, vetted);
      return;
    }
    connectionsTotal.inc({ result: 'accepted' });
    this.enter(admitted, 'relaying');
    this.toRelay(socket, vetted);
  }

  /** A socket's 'close': everything it held in our accounting is given back. */
  private closed(admitted: Admitted): void {
    this.sockets.delete(admitted.id);
    this.deps.vetted.delete(admitted.id);
    this.release(admitted);
    // The path that served the session gives the slot back with its outcome, in one store write;
    // its close handler runs after this one. The hold always does (its onClose releases, whatever
    // finish did), so a held client costs no timer here; for any other session this is the safety
    // net for one no path finished, and it waits for them.
    const policy = admitted.policy;
    if (policy !== undefined && admitted.state !== 'held') setTimeout(() => policy.release(), SLOT_SAFETY_MS).unref();
  }

  /**
   * Gives back a connection's places in the caps, once: at its close, or at
   * once when it is refused, so a client that never reads its refusal holds
   * no slot meanwhile (issue 12: refused sockets kept theirs for 5 s).
   */
  private release(admitted: Admitted): void {
    if (admitted.released) return;
    admitted.released = true;
    const client = admitted.client;
    this.limits.release();
    if (client !== undefined) this.limits.releaseClient(client);
    if (admitted.capped && client !== undefined) this.holdCaps.release(client);
    admitted.capped = false;
    sessionsActive.dec({ state: admitted.state });
  }

  /** Moves a connection's `sessions_active` count to `state`. */
  private enter(admitted: Admitted, state: Admitted['state']): void {
    sessionsActive.dec({ state: admitted.state });
    admitted.state = state;
    sessionsActive.inc({ state });
  }

  /**
   * A vetted session refused at connect: neither smtp-server nor the hold
   * sees it, so its one log line (docs/design.md §6) is written here. A
   * refusal at a cap (`reason`) is logged once per address and window
   * (RefusalLog); a policy refusal is the session's verdict, always logged.
   */
  private refuseVetted(socket: FrontSocket, vetted: Vetted, error: SmtpReplyError, result: string, reason?: RefusalReason, cap?: HoldCap): void {
    // A policy refusal is the client's doing and counts against its network; a full tarpit is ours.
    vetted.engine.finish(vetted.policy, result === 'refused_policy' ? 'bad' : 'neutral');
    const admitted = socket[kAdmitted];
    if (admitted !== undefined) this.release(admitted);
    this.refuse(socket, error, result);
    if (reason !== undefined && !this.refusals.note(vetted.remoteAddress, reason)) return;
    this.deps.logger.info(
      {
        session: vetted.id,
        client: vetted.remoteAddress,
        port: vetted.remotePort,
        ...vetted.policy.summary(),
        path: 'refused',
        ...(reason === undefined ? {} : { refused: reason }),
        ...(cap === undefined ? {} : { cap }),
        lastStage: 'connect',
        reply: error.reply.code,
      },
      'session',
    );
  }

  /** A refusal at a cap before vetting: counted, answered, logged once per address and window. */
  private refuseAtCap(socket: Socket, client: string, cap: AddressCap): undefined {
    const kind = CAP_REFUSALS[cap];
    kind.limit.inc();
    kind.result.inc();
    this.send(socket, refusalWire(kind.code));
    this.noteRefusal(client, kind.reason);
    return undefined;
  }

  private noteRefusal(client: string, reason: RefusalReason): void {
    // A client that reset before we accepted it has no address left to name (counted all the same by the caller).
    if (client !== '' && this.refusals.note(client, reason)) this.deps.logger.info({ client, refused: reason }, 'connection refused');
  }

  /**
   * A held client whose greet wait ended in a hand-over (a profile with
   * `end: relay`; the tarpit calls this): it leaves the tarpit's caps and
   * joins the relay path in the same connection, drained on shutdown like
   * any relay session.
   */
  relay(socket: Socket, vetted: Vetted): void {
    const admitted = (socket as FrontSocket)[kAdmitted];
    if (admitted === undefined || socket.destroyed) {
      socket.destroy();
      return;
    }
    if (admitted.capped) {
      admitted.capped = false;
      this.holdCaps.release(vetted.remoteAddress);
    }
    this.enter(admitted, 'relaying');
    if (this.closing) {
      // The drain may be over already: the client hears 421 before any banner and retries.
      socket.end(refusalWire('TARPIT_ERR_SHUTTING_DOWN'));
      setTimeout(() => socket.destroy(), 1000).unref();
      return;
    }
    this.sockets.set(vetted.id, socket);
    this.toRelay(socket, vetted);
  }

  /** The relay path: smtp-server's onConnect finds the vetted session by id. */
  private toRelay(socket: Socket, vetted: Vetted): void {
    const { id, remoteAddress, remotePort } = vetted;
    this.deps.vetted.set(id, vetted);
    watchHangup(vetted, socket);
    handOver(this.deps.smtp, socket, { id, remoteAddress, remotePort });
  }

  /** Answers at once, before any banner, and closes (RFC 5321 §3.1 allows 421 or 554 instead of 220). */
  private refuse(socket: Socket, reply: ErrorCode | SmtpReplyError, result: string): void {
    connectionsTotal.inc({ result });
    this.send(socket, typeof reply === 'string' ? refusalWire(reply) : reply.toWire());
  }

  /**
   * Writes a refusal and closes as soon as the kernel has it: a client that
   * never reads must not keep the socket. The reply is a few bytes, so on a
   * fresh connection the write completes at once; one that did not is
   * destroyed by the next sweep. A client that sent before the banner has
   * unread bytes, so the close becomes a reset and it may lose the reply:
   * it had not waited for the greeting either.
   */
  private send(socket: Socket, wire: string): void {
    socket.on('finish', destroySelf);
    socket.end(wire);
    if (!socket.destroyed && socket.writableLength > 0) this.lingering.add(socket);
  }

  /** Refused sockets still unwritten after a sweep interval: their deadline passed. */
  private sweepLingering(): void {
    for (const socket of this.lingered) socket.destroy();
    this.lingered.clear();
    [this.lingered, this.lingering] = [this.lingering, this.lingered];
  }

  /**
   * SIGTERM (docs/design.md §4.1): stop accepting; a session with no hook in flight is
   * told 421 at once; one in the middle of a command gets until `graceSeconds`
   * to finish it, so no transaction is cut after its 250; what remains after
   * the grace period is told 421 (the client has no 250, so it retries).
   */
  async close(graceSeconds: number): Promise<void> {
    this.closing = true;
    clearInterval(this.lingerSweep);
    this.refusals.close();
    const listenerClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const deadline = Date.now() + graceSeconds * 1000;
    const shutdownReply = replyError('TARPIT_ERR_SHUTTING_DOWN').toWire();
    while (this.sockets.size > 0) {
      const force = Date.now() >= deadline;
      for (const [id, socket] of this.sockets) {
        const pending = this.deps.pendingHooks(id);
        if (force || pending === undefined || pending === 0) {
          this.sockets.delete(id);
          if (socket.writable) socket.end(shutdownReply);
          setTimeout(() => socket.destroy(), 1000).unref();
        }
      }
      if (this.sockets.size > 0) await new Promise((r) => setTimeout(r, 50));
    }
    await listenerClosed;
  }
}

/** Each cap or shutdown refusal's bytes, built once: these come fastest when we are busiest. */
const REFUSAL_WIRE = new Map<ErrorCode, string>();

function refusalWire(code: ErrorCode): string {
  let wire = REFUSAL_WIRE.get(code);
  if (wire === undefined) REFUSAL_WIRE.set(code, (wire = replyError(code).toWire()));
  return wire;
}
