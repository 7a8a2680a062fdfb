/**
 * The proxy under test, in its own process (bench/relay.ts spawns it with an
 * IPC channel). argv[2]: a YAML configuration file. Reports
 * `{ ready: port }` over IPC once listening; SIGTERM stops it and exits 0
 * (so `node --cpu-prof` writes its profile).
 */
import { readFileSync } from 'node:fs';
import { loadConfigText } from '../../src/config/load.js';
import { createLogger } from '../../src/metrics/logger.js';
import { Proxy } from '../../src/smtp/proxy.js';

const file = process.argv[2];
if (!file || !process.send) {
  console.error('usage: spawned by bench/relay.ts with an IPC channel: proxy-main.ts <config.yaml>');
  process.exit(2);
}
const config = loadConfigText(readFileSync(file, 'utf8'), file);
// Logs go to stderr, which the bench shows only when something fails.
const logger = createLogger(config.log.level, process.stderr);
const proxy = new Proxy({ config, logger });
let removeTrap = (): void => undefined;

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  proxy.stop(1).then(
    () => exit(0),
    (err: unknown) => {
      console.error('proxy stop failed:', err);
      exit(1);
    },
  );
});
// The bench died without telling us: do not outlive it.
process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'));

function exit(code: number): void {
  removeTrap();
  process.exit(code);
}

try {
  const addresses = await proxy.start();
  removeTrap = proxy.trap.installProcessHandlers();
  process.send({ ready: addresses.smtp.port });
} catch (err) {
  console.error('proxy failed to start:', err);
  await proxy.stop(0).catch(() => undefined);
  process.exit(1);
}
