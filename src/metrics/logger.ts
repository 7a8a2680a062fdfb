/**
 * The JSON logger (pino): one line per session from the front door, plus
 * start-up, reload and trapped-error lines. Never logs message bodies.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * `worker` (a cluster worker's slot, 1..N) goes on every line, so a session
 * line says which process served it; single-process mode leaves it out.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream, worker?: number): Logger {
  return pino(
    {
      level,
      base: worker === undefined ? { pid: process.pid } : { pid: process.pid, worker },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
