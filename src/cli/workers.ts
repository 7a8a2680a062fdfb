/**
 * `serve --workers N` (N > 1): this process becomes a node:cluster primary that
 * serves no SMTP. It forks N workers, each running the whole proxy on the
 * shared listener, serves the metrics listener for all of them (/metrics
 * aggregated, /readyz from what the workers report), replaces a worker that
 * dies, forwards SIGHUP and drains every worker on SIGTERM/SIGINT.
 *
 * Caps (limits.*, tarpit.*, per-client caps, rate windows, the in-memory
 * allowlist cache) live in each worker: they apply per worker, not per machine.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../config/schema.js';
import { ClusterMetrics, isMessage, setWorkerStates, workerRestartsTotal, type WorkerState } from '../metrics/cluster.js';
import { MetricsServer, type Readiness } from '../metrics/http.js';
import type { Logger } from '../metrics/logger.js';
import { dropPrivileges, rootRefusal } from './privileges.js';

/** The worker's slot (1..N) travels in its environment; a replacement keeps the slot of the one it replaces. */
const SLOT_ENV = 'SMTP_TARPIT_WORKER';

/**
 * A worker's exit code when the primary could not bind the listener for it
 * (EACCES/EPERM): after the primary dropped root, port 25 cannot be bound again.
 * 77 is EX_NOPERM in sysexits.h.
 */
export const EXIT_LISTEN_DENIED = 77;

/** Sent by a worker once it listens (after its own privilege drop) and whenever its readiness changes. */
interface ReadyMessage {
  readonly type: 'smtp-tarpit:ready';
  readonly ready: boolean;
  readonly reason?: string | undefined;
  /** The worker's state store, when it reports one (proxy readiness `store`): degraded is shown, never a reason to stop. */
  readonly store?: unknown;
}


/** This worker's slot, or undefined outside a cluster worker. */
export function workerSlot(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const slot = Number(process.env[SLOT_ENV]);
  return Number.isInteger(slot) && slot > 0 ? slot : cluster.worker?.id;
}

/**
 * Worker side: tells the primary this worker serves, then reports readiness
 * changes (the backend pool going down or up, shutting down). Polled twice a
 * second: the pool has no change event, and a message per change is all the
 * primary needs. Returns the stopper.
 */
export function reportReadiness(readiness: () => Readiness): () => void {
  let last = '';
  const send = (): void => {
    const { ready, reason, store } = readiness();
    const key = `${ready}:${reason ?? ''}:${JSON.stringify(store) ?? ''}`;
    if (key === last || !process.connected) return;
    last = key;
    process.send?.({ type: 'smtp-tarpit:ready', ready, reason, store } satisfies ReadyMessage);
  };
  send();
  const timer = setInterval(send, 500).unref();
  return () => {
    send();
    clearInterval(timer);
  };
}

interface Slot {
  readonly slot: number;
  worker: Worker;
  state: WorkerState;
  ready: boolean;
  reason: string | undefined;
  /** What the worker last said of its state store. */
  store?: unknown;
  startedAt: number;
  /** Deaths in a row, each within CRASH_WINDOW_MS of its start: drives the backoff. */
  crashes: number;
  restart?: NodeJS.Timeout;
}

/** A worker that dies this soon after starting counts towards the crash-loop backoff. */
const CRASH_WINDOW_MS = 10_000;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

export async function runPrimary(config: Config, logger: Logger): Promise<number> {
  const refusal = rootRefusal(config, false);
  if (refusal !== undefined) return fatal(logger, refusal);
  return new Primary(config, logger).run();
}

/** Logs why the process cannot go on, says it on stderr too (an admin at a terminal), and gives the exit code. */
export function fatal(logger: Logger, why: string, err?: unknown): number {
  // `why` already states the reason. An error with a code is an expected
  // condition (no XCLIENT, a port in use): its code is all the line adds, and
  // its message and stack would only repeat `why`. Anything else is a bug, whose stack is wanted.
  const code = (err as { code?: unknown } | null | undefined)?.code;
  if (err === undefined) logger.fatal(why);
  else if (typeof code === 'string') logger.fatal({ code }, why);
  else logger.fatal({ err }, why);
  console.error(`smtp-tarpit: ${why}`);
  logger.flush();
  return 1;
}

class Primary {
  private readonly slots = new Map<number, Slot>();
  private readonly metrics: MetricsServer;
  private stopping = false;
  /** True once every first worker served: a worker exiting before that fails the start. */
  private started = false;
  private dropped = false;
  private resolve: (code: number) => void = () => undefined;
  private exitCode = 0;
  private killTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly config: Config,
    private readonly logger: Logger,
  ) {
    const serving = (): Worker[] => [...this.slots.values()].filter((s) => s.state === 'online').map((s) => s.worker);
    this.metrics = new MetricsServer(() => this.readiness(), new ClusterMetrics(serving));
  }

  async run(): Promise<number> {
    const { config, logger } = this;
    const metrics = config.metrics.listen ? await this.metrics.listen(config.metrics.listen) : null;
    // SCHED_NONE before the first fork: the primary binds the port once and
    // hands the socket to every worker, and the kernel gives each connection to
    // whichever worker accepts it first. The default on Linux (round-robin)
    // accepts every connection in the primary and passes the socket to a
    // worker over IPC: one process on the path of every connection, which is
    // what a botnet flood would hit first.
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    cluster.on('exit', (worker, code, signal) => this.exited(worker, code, signal));
    const done = new Promise<number>((resolve) => (this.resolve = resolve));
    const onTerm = (): void => this.stop('SIGTERM');
    const onInt = (): void => this.stop('SIGINT');
    const onHup = (): void => this.forwardHup();
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', onHup);
    logger.info({ workers: config.workers, metrics, listen: config.listen }, 'starting workers');
    for (let slot = 1; slot <= config.workers; slot++) this.fork(slot);
    const code = await done;
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    process.off('SIGHUP', onHup);
    cluster.removeAllListeners('exit');
    await this.metrics.close();
    logger.info({ code }, 'smtp-tarpit stopped');
    logger.flush();
    return code;
  }

  private fork(n: number): void {
    const worker = cluster.fork({ [SLOT_ENV]: String(n) });
    const previous = this.slots.get(n);
    const slot: Slot = { slot: n, worker, state: 'starting', ready: false, reason: 'starting', startedAt: Date.now(), crashes: previous?.crashes ?? 0 };
    this.slots.set(n, slot);
    worker.on('message', (message: unknown) => {
      if (!isMessage<ReadyMessage>(message, 'smtp-tarpit:ready') || slot.worker !== worker) return;
      slot.ready = message.ready;
      slot.reason = message.ready ? undefined : message.reason;
      slot.store = message.store;
      if (slot.state === 'starting') {
        slot.state = this.stopping ? 'stopping' : 'online';
        this.logger.info({ slot: n, workerPid: worker.process.pid }, 'worker serving');
        this.online();
      }
      this.publish();
    });
    this.publish();
  }

  /** After every first worker listens, the primary has bound everything it needs: drop root. */
  private online(): void {
    if (this.started || [...this.slots.values()].some((s) => s.state !== 'online')) return;
    this.started = true;
    try {
      const wasRoot = process.getuid?.() === 0;
      dropPrivileges(this.config, this.logger);
      this.dropped = wasRoot && process.getuid?.() !== 0;
    } catch (err) {
      this.fail(`cannot switch to user ${this.config.user ?? ''} and group ${this.config.group ?? ''}: ${(err as Error).message}`);
      return;
    }
    this.logger.info({ workers: this.slots.size, listen: this.config.listen }, 'smtp-tarpit listening');
  }

  private exited(worker: Worker, code: number | null, signal: string | null): void {
    const slot = [...this.slots.values()].find((s) => s.worker === worker);
    if (slot === undefined) return;
    const info = { slot: slot.slot, workerPid: worker.process.pid, code, signal };
    if (this.stopping) {
      this.slots.delete(slot.slot);
      if (code !== 0 && code !== null) this.exitCode = 1;
      this.logger.info(info, 'worker stopped');
      this.publish();
      if (this.slots.size === 0) this.finish();
      return;
    }
    if (!this.started) {
      this.slots.delete(slot.slot);
      this.fail(`worker ${slot.slot} exited (code ${code}, signal ${signal}) before it served; see its log lines above`);
      return;
    }
    if (code === EXIT_LISTEN_DENIED) {
      this.slots.delete(slot.slot);
      this.fail(
        `worker ${slot.slot} could not get the listener: every worker had exited, so the listening socket closed, ` +
          `and this primary no longer runs as root to bind ${this.config.listen.host}:${this.config.listen.port} again; exiting so the service manager restarts smtp-tarpit`,
      );
      return;
    }
    slot.crashes = Date.now() - slot.startedAt < CRASH_WINDOW_MS ? slot.crashes + 1 : 1;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (slot.crashes - 1));
    slot.state = 'starting';
    slot.ready = false;
    slot.reason = 'restarting';
    this.logger.error({ ...info, restartIn: delay / 1000 }, 'worker died; starting a replacement');
    slot.restart = setTimeout(() => {
      delete slot.restart;
      if (this.stopping) {
        this.slots.delete(slot.slot);
        if (this.slots.size === 0) this.finish();
        return;
      }
      workerRestartsTotal.inc();
      this.fork(slot.slot);
    }, delay);
    this.publish();
  }

  /** A worker cannot start, or the primary cannot go on: stop the others and exit 1. */
  private fail(why: string): void {
    this.exitCode = fatal(this.logger, why);
    this.stop('failure');
  }

  /** Each worker drains as a single process does on SIGTERM; we exit when all have. */
  private stop(signal: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.logger.info({ signal, grace: this.config.shutdown.grace }, 'stopping: draining workers');
    for (const slot of [...this.slots.values()]) {
      if (slot.restart !== undefined) {
        clearTimeout(slot.restart);
        this.slots.delete(slot.slot);
        continue;
      }
      slot.state = 'stopping';
      slot.ready = false;
      slot.reason = 'shutting down';
      // A worker may have died on its own a moment ago; kill() then fails harmlessly.
      if (!slot.worker.isDead()) slot.worker.process.kill('SIGTERM');
    }
    this.publish();
    if (this.slots.size === 0) {
      this.finish();
      return;
    }
    // Workers finish in-flight transactions within the grace; one that hangs past it is killed.
    this.killTimer = setTimeout(() => {
      for (const slot of this.slots.values()) {
        this.logger.error({ slot: slot.slot, workerPid: slot.worker.process.pid }, 'worker did not stop within the grace; killing it');
        slot.worker.process.kill('SIGKILL');
      }
      this.exitCode = 1;
    }, (this.config.shutdown.grace + 10) * 1000).unref();
  }

  private finish(): void {
    clearTimeout(this.killTimer);
    this.resolve(this.exitCode);
  }

  /** Workers reload configuration and policies themselves; one still starting reads the new files anyway. */
  private forwardHup(): void {
    const online = [...this.slots.values()].filter((s) => s.state === 'online');
    // A starting worker has no SIGHUP handler yet: the signal would kill it.
    for (const slot of online) slot.worker.process.kill('SIGHUP');
    this.logger.info({ slots: online.map((s) => s.slot) }, 'SIGHUP forwarded to the workers');
  }

  private publish(): void {
    setWorkerStates([...this.slots.values()].map((s) => s.state));
  }

  readiness(): Readiness {
    const workers = [...this.slots.values()].map((s) => ({
      worker: s.slot,
      pid: s.worker.process.pid,
      state: s.state,
      ready: s.state === 'online' && s.ready,
      ...(s.reason !== undefined && !(s.state === 'online' && s.ready) ? { reason: s.reason } : {}),
      ...(s.store !== undefined ? { store: s.store } : {}),
    }));
    const ready = !this.stopping && workers.some((w) => w.ready);
    let reason: string | undefined;
    if (!ready) {
      if (this.stopping) reason = 'shutting down';
      else if (!workers.some((w) => w.state === 'online')) reason = 'no worker listening';
      else reason = `no worker can serve: ${workers.find((w) => w.reason !== undefined)?.reason ?? 'unknown'}`;
    }
    return { ready, reason, workers, privilegesDropped: this.dropped };
  }
}
