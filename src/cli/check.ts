import { ConfigErrors } from '../config/config-error.js';
import { loadConfigFile } from '../config/load.js';

/** `smtp-tarpit check`: 0 when the configuration is valid, 1 with one line per mistake. */
export function runCheck(file: string): number {
  try {
    const config = loadConfigFile(file);
    console.log(`${file}: ok (listen ${config.listen.host}:${config.listen.port}, backend ${config.backend.address.host}:${config.backend.address.port})`);
    return 0;
  } catch (err) {
    if (err instanceof ConfigErrors) {
      for (const e of err.errors) console.error(e.message);
      return 1;
    }
    throw err;
  }
}
