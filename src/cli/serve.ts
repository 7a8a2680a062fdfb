/**
 * `smtp-tarpit serve`: load the configuration and the policies, start the
 * proxy, drop root once the ports are bound, and turn signals into actions:
 * SIGTERM/SIGINT drain and stop, SIGHUP reloads what can change live (log
 * level, policies) and keeps the old configuration or policy when the new one
 * is invalid. With `workers` above 1 the process is a cluster primary
 * (src/cli/workers.ts) and each worker runs the code below.
 */
import cluster from 'node:cluster';
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { SmtpReplyError } from '../core/errors.js';
import { answerMetricsRequests } from '../metrics/cluster.js';
import { createLogger, type Logger } from '../metrics/logger.js';
import { configReloadsTotal } from '../metrics/registry.js';
import { PolicyErrors } from '../policy/policy-error.js';
import { Proxy } from '../smtp/proxy.js';
import { dropPrivileges, rootRefusal, unreadablePaths } from './privileges.js';
import { EXIT_LISTEN_DENIED, fatal, reportReadiness, runPrimary, workerSlot } from './workers.js';

export interface ServeArgs extends ConfigOverrides {
  readonly config: string;
}

export async function runServe(args: ServeArgs): Promise<number> {
  let config: Config;
  try {
    config = loadConfigFile(args.config, args);
  } catch (err) {
    if (err instanceof ConfigErrors) {
      for (const e of err.errors) console.error(e.message);
      return 1;
    }
    throw err;
  }
  if (cluster.isPrimary && config.workers > 1) return runPrimary(config, createLogger(config.log.level));
  if (!cluster.isWorker) return serveProcess(args, config);
  const code = await serveProcess(args, config, workerSlot());
  // The IPC channel keeps a worker alive; leaving the cluster this way lets
  // the event loop drain (log lines flushed) instead of exiting at once.
  cluster.worker?.disconnect();
  return code;
}

/** One process serving SMTP: the whole proxy, or one cluster worker (`worker` set). */
async function serveProcess(args: ServeArgs, config: Config, worker?: number): Promise<number> {
  const logger = createLogger(config.log.level, undefined, worker);
  const refusal = rootRefusal(config, false);
  if (refusal !== undefined) return fatal(logger, refusal);
  let proxy: Proxy;
  try {
    // A worker's metrics are served by the primary, aggregated (src/metrics/cluster.ts).
    proxy = new Proxy({ config: worker === undefined ? config : { ...config, metrics: { listen: null } }, logger });
  } catch (err) {
    if (err instanceof PolicyErrors) {
      for (const e of err.errors) console.error(e.message);
      return 1;
    }
    throw err;
  }
  const removeTrap = proxy.trap.installProcessHandlers();
  const abort = async (why: string, code = 1, err?: unknown): Promise<number> => {
    fatal(logger, why, err);
    removeTrap();
    await proxy.stop(0).catch(() => undefined);
    return code;
  };
  try {
    await proxy.start();
  } catch (err) {
    // The operator needs the backend's reason (the cause), not the client-facing reply.
    const why = err instanceof SmtpReplyError && err.cause instanceof Error ? `${err.cause.message} (${err.code})` : (err as Error).message;
    const code = (err as NodeJS.ErrnoException).code;
    // In a worker the primary binds: EACCES there means it can no longer bind a privileged port.
    const denied = worker !== undefined && (code === 'EACCES' || code === 'EPERM');
    return abort(`cannot start: ${why}`, denied ? EXIT_LISTEN_DENIED : 1, err);
  }
  // No await since start() resolved: the switch happens before any accepted socket reaches us (privileges.ts).
  try {
    dropPrivileges(config, logger);
  } catch (err) {
    return abort(`cannot switch to user ${config.user ?? ''} and group ${config.group ?? ''}: ${(err as Error).message}`);
  }
  const stillRoot = rootRefusal(config, true);
  if (stillRoot !== undefined) return abort(stillRoot);
  for (const path of unreadablePaths(config)) {
    logger.warn({ path, uid: process.getuid?.() }, 'not readable by this process: a SIGHUP reload that needs it will fail');
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, grace: config.shutdown.grace }, 'stopping: draining sessions');
      proxy.stop().then(
        () => finish(0),
        (err: unknown) => {
          logger.error({ err }, 'error while stopping');
          finish(1);
        },
      );
    };
    const reload = () => {
      reloadConfig(args, config, logger);
      // Debounced with the directory watch: a save and this signal are one reload (PolicyStore.requestReload).
      void proxy.policy.requestReload('sighup');
    };
    const finish = (code: number) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.off('SIGHUP', reload);
      stopCluster();
      removeTrap();
      logger.flush();
      resolve(code);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', reload);
    // Told only now, with the signal handlers in place: the primary forwards SIGHUP to serving workers.
    const stopCluster = worker === undefined ? () => undefined : clusterReporting(proxy);
  });
}

/** A worker's side of the cluster: answer metrics requests, report readiness. Returns the stopper. */
function clusterReporting(proxy: Proxy): () => void {
  const stopAnswering = answerMetricsRequests();
  const stopReporting = reportReadiness(() => proxy.readiness());
  return () => {
    stopReporting();
    stopAnswering();
  };
}


/**
 * Validates the file again; an invalid one keeps the running configuration.
 * Only the log level applies live: listeners, limits and the pool need a
 * restart, and the log says which settings changed. The policy directory
 * reloads on the same signal (PolicyStore), each with its own verdict.
 */
function reloadConfig(args: ServeArgs, running: Config, logger: Logger): void {
  try {
    const next = loadConfigFile(args.config, args);
    logger.level = next.log.level;
    const changed = Object.keys(next).filter(
      (k) => k !== 'log' && JSON.stringify(next[k as keyof Config]) !== JSON.stringify(running[k as keyof Config]),
    );
    configReloadsTotal.inc({ result: 'ok' });
    logger.info({ file: args.config, needsRestart: changed }, 'configuration reloaded');
  } catch (err) {
    configReloadsTotal.inc({ result: 'error' });
    logger.error({ file: args.config, errors: err instanceof ConfigErrors ? err.errors.map((e) => e.message) : String(err) }, 'reload failed; the running configuration stays in force');
  }
}
