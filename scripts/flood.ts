/**
 * A connection flood, as a botnet's cheapest attack on port 25 looks: open
 * connections as fast as the machine allows and never read from them. One
 * address (`--from 127.0.0.9`) plays one hostile host; `--from 127.60.0.0
 * --addresses 2000` spreads the flood over consecutive addresses (and so over
 * many /24s). Runs in its own process so the flood does not share an event
 * loop with whatever measures the proxy.
 *
 *   node --import tsx scripts/flood.ts --port 2525 --from 127.0.0.9 --count 5000
 *
 * Prints one JSON line when every connect is settled: how many connected,
 * how many failed, and how long the burst took. The sockets are then kept
 * open, unread, until stdin closes or `--hold` seconds pass.
 */
import { connect, type Socket } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    from: { type: 'string', default: '127.0.0.9' },
    addresses: { type: 'string', default: '1' },
    count: { type: 'string', default: '5000' },
    /** Connects in flight at once: the kernel's accept queue, not this loop, should be what limits the rate. */
    inflight: { type: 'string', default: '256' },
    hold: { type: 'string', default: '0' },
  },
});
const port = Number(values.port);
const count = Number(values.count);
const addresses = Number(values.addresses);
const inflight = Number(values.inflight);
if (!Number.isInteger(port) || !(count > 0) || !(addresses > 0) || !(inflight > 0)) {
  console.error('usage: flood.ts --port N [--host H] [--from IPv4] [--addresses N] [--count N] [--inflight N] [--hold S]');
  process.exit(2);
}

/** The n-th address from `from`, counting through the last octets (127.60.0.0 + 300 = 127.60.1.44). */
function addressAt(from: string, n: number): string {
  const [a, b, c, d] = from.split('.').map(Number) as [number, number, number, number];
  const v = (((a << 24) >>> 0) + (b << 16) + (c << 8) + d + n) >>> 0;
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

const sockets: Socket[] = [];
let started = 0;
let connected = 0;
let failed = 0;
let settled = 0;
const t0 = performance.now();

function next(): void {
  if (started >= count) return;
  const localAddress = addressAt(values.from, started % addresses);
  started++;
  const socket = connect({ host: values.host, port, localAddress });
  // Never read: the proxy's reply (a banner or a 421) stays in the kernel's buffers.
  socket.pause();
  socket.on('error', () => undefined);
  let done = false;
  const settle = (ok: boolean) => {
    if (done) return;
    done = true;
    if (ok) connected++;
    else failed++;
    settled++;
    if (settled === count) report();
    else next();
  };
  socket.once('connect', () => settle(true));
  socket.once('close', () => settle(false));
  sockets.push(socket);
}

function report(): void {
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ count, connected, failed, seconds: Number(seconds.toFixed(3)), perSecond: Math.round(count / seconds) }));
  const hold = Number(values.hold);
  const end = () => {
    for (const s of sockets) s.destroy();
    process.exit(0);
  };
  if (hold > 0) setTimeout(end, hold * 1000);
  process.stdin.on('end', end);
  process.stdin.on('close', end);
  process.stdin.resume();
}

for (let i = 0; i < Math.min(inflight, count); i++) next();
