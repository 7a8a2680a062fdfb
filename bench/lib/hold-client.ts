/**
 * The load of bench/hold.ts, run as its own process (`node --import tsx
 * bench/lib/hold-client.ts '<json options>'`): the open-file limit here is
 * 20,000 per process (docs/platform-notes.md), so clients in the proxy's process, or in the
 * bench's, would halve what the proxy can hold.
 *
 * Opens `count` connections at `rate` per second and keeps them open, saying
 * nothing (a bot waiting for a banner). Connection i comes from its own
 * source address, 127.A.B.1 with A = base + i / 250 and B = 1 + i % 250, so
 * each is a different client and a different /24: no per-client or per-/24
 * cap sees more than one, as in a botnet flood, and no source address runs
 * out of ephemeral ports.
 *
 * Reports on stdout, one JSON line (ClientStatus) every 250 ms and one when
 * it stops; ends every socket and exits on SIGTERM or when stdin closes.
 */
import { connect, type Socket } from 'node:net';

export interface HoldClientOptions {
  readonly host: string;
  readonly port: number;
  readonly count: number;
  /** New connections per second. */
  readonly rate: number;
  /** Second octet of the first source address (2..127 minus the connections / 250). */
  readonly base: number;
}

export interface ClientStatus {
  /** connect() called */
  readonly opened: number;
  /** TCP handshake done */
  readonly connected: number;
  /** errors (connect refused, reset, address not available…) */
  readonly failed: number;
  /** connections the proxy closed (after connecting, without an error) */
  readonly closedByPeer: number;
  /** bytes received from the proxy, all connections */
  readonly bytes: number;
  /** ms since the first connect() */
  readonly ms: number;
  /** true once all `count` were opened */
  readonly rampDone: boolean;
  /** the first few distinct error messages */
  readonly errors: readonly string[];
}

/** Source address of connection `i`: its own address and its own /24. */
export function sourceAddress(base: number, i: number): string {
  return `127.${base + Math.floor(i / 250)}.${1 + (i % 250)}.1`;
}

function run(o: HoldClientOptions): void {
  const sockets: Socket[] = [];
  let connected = 0;
  let failed = 0;
  let closedByPeer = 0;
  let bytes = 0;
  const errors = new Set<string>();
  const started = performance.now();
  let stopping = false;

  const status = (): ClientStatus => ({
    opened: sockets.length,
    connected,
    failed,
    closedByPeer,
    bytes,
    ms: Math.round(performance.now() - started),
    rampDone: sockets.length >= o.count,
    errors: [...errors],
  });
  const report = (): void => void process.stdout.write(`${JSON.stringify(status())}\n`);

  const open = (i: number): void => {
    const socket = connect({ host: o.host, port: o.port, localAddress: sourceAddress(o.base, i) });
    let failedHere = false;
    socket.once('connect', () => connected++);
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      failedHere = true;
      failed++;
      if (errors.size < 5) errors.add(err.code ?? err.message);
    });
    socket.on('close', () => {
      if (!failedHere && !stopping) closedByPeer++;
    });
    sockets.push(socket);
  };

  // Paced by the clock, not by a fixed batch per tick: timers run late under load.
  const pacer = setInterval(() => {
    const due = Math.min(o.count, Math.floor(((performance.now() - started) / 1000) * o.rate) + 1);
    while (sockets.length < due) open(sockets.length);
    if (sockets.length >= o.count) clearInterval(pacer);
  }, 5);
  const reporter = setInterval(report, 250);

  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(pacer);
    clearInterval(reporter);
    report();
    for (const s of sockets) s.destroy();
    setTimeout(() => process.exit(0), 100);
  };
  process.once('SIGTERM', stop);
  process.stdin.resume();
  process.stdin.once('end', stop);
}

const arg = process.argv[2];
if (arg !== undefined) run(JSON.parse(arg) as HoldClientOptions);
