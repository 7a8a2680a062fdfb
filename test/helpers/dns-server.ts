/**
 * A REAL DNS server for the DNS checks' tests: dnsmasq (test/helpers/dnsmasq.ts)
 * on 127.0.0.1 and a free port, serving the zone in `TEST_DNS` and nothing
 * else. The machine's own resolver is not on loopback (docs/platform-notes.md), so no test
 * may reach it: every other name is REFUSED.
 *
 * `slow.test` and the reverse zone of 127.0.9.0/24 are forwarded to a UDP
 * socket that counts packets and never answers: lookups there time out.
 *
 * Gate tests with `requireTool(t, 'dnsmasq')` (Debian package dnsmasq).
 */
import dgram from 'node:dgram';
import { after } from 'node:test';
import { startDnsmasq } from './dnsmasq.js';

/** What the test zone holds; tests name records through this, not through literals. */
export const TEST_DNS = {
  /** RFC 5782 style blocklist. */
  bl: 'bl.test',
  /** Allowlist answering 127.0.10.2. */
  wl: 'wl.test',
  /** Forwarded to a server that never answers. */
  slow: 'slow.test',
  /** Not served at all: dnsmasq answers REFUSED. */
  refused: 'bl.invalid',
  /** TTL (seconds) of the records below unless noted. */
  ttl: 30,
  listed: {
    /** On bl.test, answering 127.0.0.2. */
    ipv4: '127.0.0.2',
    /** On bl.test (nibble name), answering 127.0.0.2. */
    ipv6: '2001:db8::2',
    /** On bl.test, answering 127.0.0.3 with a TTL of 0 (must not be cached). */
    ttl0: '127.0.0.3',
    /** On bl.test, answering only 127.255.255.254: an error code a filter must ignore. */
    errorCode: '127.0.0.4',
    /** On wl.test, answering 127.0.10.2. */
    allowlisted: '127.0.0.10',
  },
  /** On no list. */
  clean: '127.0.0.1',
  rdns: {
    /** PTR mx.good.test, whose A is 127.0.1.1 and AAAA 2001:db8::25 (so 2001:db8::25 is confirmed too). */
    confirmed: { address: '127.0.1.1', ipv6: '2001:db8::25', name: 'mx.good.test' },
    /** PTR liar.test, whose A is 127.0.1.99. */
    unconfirmed: { address: '127.0.1.2', name: 'liar.test' },
    /** No PTR (NXDOMAIN). */
    missing: '127.0.1.3',
    /** PTR host.slow.test, whose A lookup times out. */
    forwardTimesOut: { address: '127.0.1.4', name: 'host.slow.test' },
    /** PTRs liar.test and mx5.good.test; the latter's A is 127.0.1.5. */
    several: { address: '127.0.1.5', name: 'mx5.good.test' },
    /** Its PTR lookup times out (127.0.9.0/24's reverse zone goes to the silent server). */
    ptrTimesOut: '127.0.9.1',
  },
  /** A big sender's pool member: PTR mail-ed1-f41.google.com, whose A is 127.0.3.1 (forward-confirmed, under a shipped knownSenders suffix). */
  knownSender: { address: '127.0.3.1', name: 'mail-ed1-f41.google.com' },
} as const;

export interface DnsServer {
  /** `127.0.0.1:PORT`, for DnsClient `servers`. */
  readonly address: string;
  readonly port: number;
  /** Queries the silent server received (dnsmasq forwards slow.test there). */
  readonly silent: SilentServer;
  /** dnsmasq's stderr so far, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export interface SilentServer {
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  readonly port: number;
  /** UDP packets received so far. */
  packets(): number;
  stop(): Promise<void>;
}

/** A UDP "DNS server" that reads every query and answers none: anything sent there times out. */
export async function startSilentServer(): Promise<SilentServer> {
  const socket = dgram.createSocket('udp4');
  let packets = 0;
  socket.on('message', () => packets++);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => resolve());
  });
  const { port } = socket.address();
  return {
    address: `127.0.0.1:${port}`,
    port,
    packets: () => packets,
    stop: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

export async function startDnsServer(): Promise<DnsServer> {
  const silent = await startSilentServer();
  try {
    const dnsmasq = await startDnsmasq({ lines: zoneLines(silent.port), logQueries: true });
    return {
      address: dnsmasq.address,
      port: dnsmasq.port,
      silent,
      log: () => dnsmasq.log(),
      stop: async () => {
        await dnsmasq.stop();
        await silent.stop();
      },
    };
  } catch (err) {
    await silent.stop();
    throw err;
  }
}

/**
 * One dnsmasq for a test file, started by the first test that asks (after its
 * requireTool gate) and stopped when the file's tests are done.
 */
export function sharedDnsServer(): { get(): Promise<DnsServer> } {
  let server: Promise<DnsServer> | undefined;
  after(async () => {
    if (server) await (await server.catch(() => undefined))?.stop();
  });
  return { get: () => (server ??= startDnsServer()) };
}

/** The test zone as dnsmasq.conf lines; `slow.test` and 127.0.9.0/24's reverse zone go to the silent server. */
function zoneLines(silentPort: number): string[] {
  const z = TEST_DNS;
  const ttl = String(z.ttl);
  return [
    // Answer only from the records below: NXDOMAIN for other names in these domains, REFUSED elsewhere.
    'local=/test/',
    'local=/127.in-addr.arpa/',
    'local=/ip6.arpa/',
    // DNSBL: RFC 5782 test point, an IPv6 nibble entry, a TTL-0 entry and an error-code answer.
    `host-record=2.0.0.127.${z.bl},127.0.0.2,${ttl}`,
    `host-record=${nibbles('2001:0db8:0000:0000:0000:0000:0000:0002')}.${z.bl},127.0.0.2,${ttl}`,
    `host-record=3.0.0.127.${z.bl},127.0.0.3`,
    `host-record=4.0.0.127.${z.bl},127.255.255.254,${ttl}`,
    `host-record=10.0.0.127.${z.wl},127.0.10.2,${ttl}`,
    // FCrDNS. host-record also makes the PTR of its first address of each family.
    `host-record=mx.good.test,127.0.1.1,2001:db8::25,${ttl}`,
    'ptr-record=2.1.0.127.in-addr.arpa,liar.test',
    `host-record=liar.test,127.0.1.99,${ttl}`,
    'ptr-record=4.1.0.127.in-addr.arpa,host.slow.test',
    'ptr-record=5.1.0.127.in-addr.arpa,liar.test',
    'ptr-record=5.1.0.127.in-addr.arpa,mx5.good.test',
    `host-record=mx5.good.test,127.0.1.5,${ttl}`,
    // Only this one name under google.com is answered: others go nowhere (no upstream).
    `host-record=${z.knownSender.name},${z.knownSender.address},${ttl}`,
    // Timeouts: forwarded to a socket that never answers.
    `server=/${z.slow}/127.0.0.1#${silentPort}`,
    `server=/9.0.127.in-addr.arpa/127.0.0.1#${silentPort}`,
  ];
}

/** `2001:0db8:…:0002` (written out in full) → its 32 reversed nibbles. */
function nibbles(full: string): string {
  return full.replaceAll(':', '').split('').reverse().join('.');
}
