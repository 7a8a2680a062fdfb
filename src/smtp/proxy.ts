/**
 * The proxy assembled: front door, smtp-server with the relay hooks, backend
 * pool, metrics listener and trap. `serve` runs one; tests start one on port 0.
 */
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import type { Config } from '../config/schema.js';
import { SmtpReplyError } from '../core/errors.js';
import { MetricsServer, type Readiness } from '../metrics/http.js';
import type { Logger } from '../metrics/logger.js';
import { compileCidrList } from '../policy/lists/cidr-list.js';
import { BackendPool } from '../relay/pool.js';
import { Trap } from '../trap/trap.js';
import type { FaultPlan } from './faults.js';
import { Front, type Vetted } from './front.js';
import { createPolicyState, localIdentity } from '../policy/state.js';
import { createStateStore, storeConnected } from '../state/create-store.js';
import type { StateStore } from '../state/store.js';
import { PolicyStore } from '../policy/policy-store.js';
import { Tarpit } from '../tarpit/tarpit.js';
import { countSessions, zeroSessionTiming } from '../tarpit/metrics.js';
import { VERDICTS } from '../policy/evidence.js';
import { RelayHandlers } from './handlers.js';

export interface ProxyOptions {
  readonly config: Config;
  readonly logger: Logger;
  /** Test-only: make hooks fail on purpose (src/smtp/faults.ts). */
  readonly faults?: FaultPlan;
}

export interface ProxyAddresses {
  readonly smtp: AddressInfo;
  readonly metrics: AddressInfo | null;
}

export class Proxy {
  readonly trap: Trap;
  readonly pool: BackendPool;
  readonly policy: PolicyStore;
  /** What the policy remembers (state.store): in memory, or shared through Redis. */
  readonly store: StateStore;
  readonly tarpit: Tarpit;
  private readonly handlers: RelayHandlers;
  private readonly smtp: SMTPServer;
  private readonly front: Front;
  private readonly metrics: MetricsServer;
  private listening = false;
  /** Stops counting this proxy's sessions in scrapes (set while it runs). */
  private uncount: (() => void) | undefined;

  constructor(private readonly options: ProxyOptions) {
    const { config, logger } = options;
    this.trap = new Trap(logger);
    zeroSessionTiming(VERDICTS);
    const b = config.backend;
    this.pool = new BackendPool({
      backend: {
        host: b.address.host,
        port: b.address.port,
        heloName: b.heloName,
        tls: b.starttls ? 'starttls' : 'none',
        tlsOptions: { servername: b.address.host },
        timeouts: b.timeouts,
      },
      size: b.poolSize,
      warm: b.warm,
      idleTimeout: b.idleTimeout,
      acquireTimeout: b.acquireTimeout,
      maxPerGroup: b.maxPerGroup,
      reconnect: b.reconnect,
    });
    // Throws the policy directory's errors (file:line:col) when it is invalid at start-up.
    this.store = createStateStore(config.state, logger);
    this.policy = new PolicyStore(config.policies, createPolicyState(config, this.store), localIdentity(config), logger);
    // `relay` runs only after start(), when the front exists: a greet wait that ends in a hand-over (end: relay).
    this.tarpit = new Tarpit({ config, trap: this.trap, logger, relay: (socket, session) => this.front.relay(socket, session) });
    const vetted = new Map<string, Vetted>();
    this.handlers = new RelayHandlers({
      config,
      pool: this.pool,
      trap: this.trap,
      logger,
      vetted,
      faults: options.faults,
      isShuttingDown: () => this.front.shuttingDown,
    });
    this.smtp = new SMTPServer(smtpServerOptions(config, this.handlers));
    // Without an error listener a client reset inside a transaction kills the process (docs/platform-notes.md).
    // A reset is expected: its code says enough, a stack trace would not.
    this.smtp.on('error', this.trap.guard('server', (err: Error) => logger.debug({ code: (err as NodeJS.ErrnoException).code, reason: err.message }, 'client connection error')));
    this.front = new Front({
      config,
      smtp: this.smtp,
      trap: this.trap,
      logger,
      trustedProxies: compileCidrList(
        config.proxyProtocol.trustedProxies.map((value, i) => ({ value, line: i + 1 })),
        `${config.source} proxyProtocol.trustedProxies`,
      ),
      pendingHooks: (id) => this.handlers.sessions.get(id)?.pending,
      policy: this.policy,
      vetted,
      hold: (socket, session) => this.tarpit.hold(socket, session),
    });
    this.metrics = new MetricsServer(() => this.readiness());
  }

  /** Checks the backend (exits early on a backend that refuses XCLIENT), then listens. */
  async start(): Promise<ProxyAddresses> {
    try {
      await this.pool.probe();
    } catch (err) {
      // A backend that is down may come back: serve and answer 451 meanwhile.
      // One that refuses XCLIENT is misconfigured: relaying anyway would hide
      // every client behind our address (the open-relay trap), so stop here.
      if (!(err instanceof SmtpReplyError) || err.code !== 'TARPIT_ERR_BACKEND_UNAVAILABLE') throw err;
      // Expected (the backend may start after us): the reason, not a stack trace.
      this.options.logger.warn(
        { reason: err.cause instanceof Error ? err.cause.message : err.message, code: systemCode(err) ?? err.code, backend: this.options.config.backend.address },
        'backend unreachable at start-up; clients get 451 until it answers',
      );
    }
    this.pool.start();
    this.policy.watch();
    // The first clients should meet the fleet's memory; a store still down is not fatal (mail flow first).
    const health = await storeConnected(this.store);
    if (health.degraded) this.options.logger.warn({ store: health }, 'state store not reachable at start-up; serving from local memory until it is');
    this.uncount = countSessions({
      held: () => this.tarpit.heldSessions(),
      relaying: () => this.handlers.sessions.values(),
      profiles: () => this.policy.current.policy.profiles.keys(),
    });
    // SMTP binds last: `serve` drops root right after start() returns, and only
    // promise jobs may run between this listen and that drop (src/cli/privileges.ts).
    const metrics = this.options.config.metrics.listen ? await this.metrics.listen(this.options.config.metrics.listen) : null;
    const smtp = await this.front.listen();
    this.listening = true;
    this.options.logger.info({ listen: smtp, metrics, backend: this.options.config.backend.address }, 'smtp-tarpit listening');
    return { smtp, metrics };
  }

  readiness(): Readiness {
    const pool = this.pool.health();
    const ready = this.listening && !this.front.shuttingDown && pool.ready;
    const reason = !this.listening ? 'not listening' : this.front.shuttingDown ? 'shutting down' : pool.reason;
    // A shared store that fell back to memory is degraded, not a reason to stop taking mail: it is only reported.
    return { ready, reason: ready ? undefined : reason, connections: this.front.openConnections, pool, store: this.store.health() };
  }

  /** SIGTERM: drain (see Front.close), then close the pool and the metrics listener. */
  async stop(graceSeconds = this.options.config.shutdown.grace): Promise<void> {
    this.policy.close();
    this.uncount?.();
    await Promise.all([this.front.close(graceSeconds), this.tarpit.close()]);
    await this.pool.close();
    // Sessions ended above close their sockets a moment later, and only then give their rate slots back and record their outcome in the store.
    const deadline = Date.now() + STORE_DRAIN_WAIT_MS;
    while (this.front.openConnections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await this.store.close();
    await this.metrics.close();
    this.options.logger.info('smtp-tarpit stopped');
  }
}

/** How long shutdown waits for closing sessions' last writes to the store. */
const STORE_DRAIN_WAIT_MS = 2000;

function smtpServerOptions(config: Config, handlers: RelayHandlers): SMTPServerOptions {
  const { key, cert } = config.tls;
  const tls = key !== undefined && cert !== undefined;
  return {
    name: config.hostname,
    banner: config.banner,
    size: config.limits.maxMessageSize,
    maxCommandLength: config.limits.maxLineLength,
    socketTimeout: config.limits.idleTimeout * 1000,
    // No AUTH on port 25; STARTTLS only with our own certificate: smtp-server's
    // built-in one has a publicly known key (docs/platform-notes.md).
    disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    authOptional: true,
    ...(tls ? { key: readFileSync(key), cert: readFileSync(cert) } : {}),
    // Backend replies are passed through with their own enhanced status codes
    // (550 5.7.1 stays 5.7.1); smtp-server would prefix a second, guessed one.
    hideENHANCEDSTATUSCODES: true,
    hideDSN: true,
    // Our front door reads PROXY headers and resolves names itself.
    disableReverseLookup: true,
    logger: false,
    ...handlers.hooks(),
  };
}

/** The system's code (ECONNREFUSED, ETIMEDOUT) somewhere along an error's causes, if any. */
function systemCode(err: unknown): string | undefined {
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  }
  return undefined;
}
