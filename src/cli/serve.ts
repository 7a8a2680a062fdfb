/**
 * `smtp-tarpit serve`: load the configuration and the policies, start the
 * proxy, and turn signals into actions: SIGTERM/SIGINT drain and stop, SIGHUP
 * reloads what can change live (log level, policies) and keeps the old
 * configuration or policy when the new one is invalid.
 */
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { SmtpReplyError } from '../core/errors.js';
import { createLogger, type Logger } from '../metrics/logger.js';
import { configReloadsTotal } from '../metrics/registry.js';
import { PolicyErrors } from '../policy/policy-error.js';
import { Proxy } from '../smtp/proxy.js';

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
  const logger = createLogger(config.log.level);
  let proxy: Proxy;
  try {
    proxy = new Proxy({ config, logger });
  } catch (err) {
    if (err instanceof PolicyErrors) {
      for (const e of err.errors) console.error(e.message);
      return 1;
    }
    throw err;
  }
  const removeTrap = proxy.trap.installProcessHandlers();
  try {
    await proxy.start();
  } catch (err) {
    // The operator needs the backend's reason (the cause), not the client-facing reply.
    const why = err instanceof SmtpReplyError && err.cause instanceof Error ? `${err.cause.message} (${err.code})` : (err as Error).message;
    logger.fatal({ err }, `cannot start: ${why}`);
    console.error(`smtp-tarpit: cannot start: ${why}`);
    logger.flush();
    removeTrap();
    await proxy.stop(0).catch(() => undefined);
    return 1;
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
      proxy.policy.reload('sighup');
    };
    const finish = (code: number) => {
      process.off('SIGTERM', onTerm);
      process.off('SIGINT', onInt);
      process.off('SIGHUP', reload);
      removeTrap();
      logger.flush();
      resolve(code);
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    process.on('SIGHUP', reload);
  });
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
