/**
 * `smtp-tarpit serve`: load the configuration, start the proxy, and turn
 * signals into actions: SIGTERM/SIGINT drain and stop, SIGHUP reloads what
 * can change live and keeps the old configuration when the new one is invalid.
 */
import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile, type ConfigOverrides } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { SmtpReplyError } from '../core/errors.js';
import { createLogger, type Logger } from '../metrics/logger.js';
import { configReloadsTotal } from '../metrics/registry.js';
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
  const proxy = new Proxy({ config, logger });
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
    const reload = () => reloadConfig(args, config, logger);
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
 * Only the log level applies live so far: listeners, limits and the pool need
 * a restart, and the log says which settings changed (policies reload live
 * once the policy engine lands).
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
