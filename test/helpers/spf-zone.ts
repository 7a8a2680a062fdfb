/**
 * A zone of SPF records for the walk and `allowlist spf` tests, served by a
 * real dnsmasq (test/helpers/dnsmasq.ts): nested includes, a loop, a
 * redirect, `a` and `mx` with dual CIDR lengths, a record over the lookup
 * limit, and broken records of every kind the walk must report. Names under
 * `spf.test` that have no record get NXDOMAIN; `slow.spf.test` goes to a
 * server that never answers, so lookups there time out; names outside both
 * are REFUSED.
 *
 * Tests name domains and networks through SPF_ZONE, not literals.
 */
import { after } from 'node:test';
import { startDnsmasq, type Dnsmasq } from './dnsmasq.js';
import { startSilentServer, type SilentServer } from './dns-server.js';

const Z = 'spf.test';

export const SPF_ZONE = {
  /** 3 levels: nested → level1 → level2; level2 repeats nested's 192.0.2.0/24. */
  nested: { domain: `nested.${Z}`, level1: `level1.${Z}`, level2: `level2.${Z}`, networks: ['192.0.2.0/24', '2001:db8:1::/48', '198.51.100.0/25'] },
  /** loop-a includes loop-b, which includes loop-a. */
  loop: { a: `loop-a.${Z}`, b: `loop-b.${Z}`, networks: ['203.0.113.1', '203.0.113.2'] },
  /** redirect=target. */
  redirect: { domain: `redirected.${Z}`, target: `target.${Z}`, networks: ['203.0.113.64/26'] },
  /**
   * `a a:www/28 mx/24//64 mx:other`: its own A and AAAA, www's A widened to
   * /28, its two MX hosts' addresses widened to /24 and /64, other's MX host.
   */
  hosts: {
    domain: `hosts.${Z}`,
    networks: ['192.0.2.10', '2001:db8:10::10', '198.51.100.64/28', '203.0.113.0/24', '2001:db8:25::/64', '192.0.2.129'],
  },
  /** 11 includes, one network each (100.64.N.0/24): over RFC 7208 §4.6.4's 10 lookups. */
  many: { domain: `many.${Z}`, includes: 11 },
  /** An MX with 11 hosts, each with an address (100.65.0.N). */
  manyMx: { domain: `many-mx.${Z}`, hosts: 11 },
  /** `ip4:192.0.2.200 foo:bar.example ip4:192.0.2.201`: an unknown mechanism between two good terms. */
  syntax: { domain: `syntax.${Z}`, term: 'foo:bar.example', networks: ['192.0.2.200', '192.0.2.201'] },
  /** Two v=spf1 records (RFC 7208 §4.5). */
  two: { domain: `two.${Z}` },
  /** Includes a name with only a non-SPF TXT record and a name that does not exist; lists 192.0.2.251 itself. */
  missing: { domain: `includes-missing.${Z}`, noSpf: `nospf.${Z}`, nxdomain: `nxdomain.${Z}`, networks: ['192.0.2.251'] },
  /** `ip4:192.0.2.0/33 ip4:192.0.2.252 ip6:2001:db8::/129 ip4:192.0.2.256`. */
  badCidr: { domain: `badcidr.${Z}`, terms: ['ip4:192.0.2.0/33', 'ip6:2001:db8::/129', 'ip4:192.0.2.256'], networks: ['192.0.2.252'] },
  /** Includes a name whose lookups time out; lists 192.0.2.253 itself. */
  timeout: { domain: `timeout.${Z}`, target: `_spf.slow.${Z}`, networks: ['192.0.2.253'] },
  /** `a:` a host whose A and AAAA lookups time out; lists 192.0.2.241 itself. */
  timeoutA: { domain: `timeout-a.${Z}`, term: `a:host.slow.${Z}`, networks: ['192.0.2.241'] },
  /** `a:` a name with no address and `mx:` a domain with no MX: warnings; lists 192.0.2.240 itself. */
  noAddress: { domain: `noaddr.${Z}`, terms: [`a:gone.${Z}`, `mx:nospf.${Z}`], networks: ['192.0.2.240'] },
  /** Includes a name outside every zone (REFUSED); lists 192.0.2.254 itself. */
  refused: { domain: `refused.${Z}`, target: 'elsewhere.invalid', networks: ['192.0.2.254'] },
  /** Qualifiers, ptr, exists, a macro, exp= and a term after all. Only 192.0.2.1 is a sender. */
  quals: { domain: `quals.${Z}`, networks: ['192.0.2.1'] },
  /** One record in two character-strings, split inside a term: "v=spf1 ip4:192.0.2.3" + "2/27 -all". */
  chunked: { domain: `chunked.${Z}`, networks: ['192.0.2.32/27'] },
  /** Networks wider than /8 and /16, an `a/4`, and `+all`: only 10.0.0.0/8 is listed. */
  wide: { domain: `wide.${Z}`, terms: ['ip4:0.0.0.0/1', 'ip6:2000::/3', `a:www.${Z}/4`], networks: ['10.0.0.0/8'] },
  /** v=spf1 -all: a domain that sends no mail. */
  none: { domain: `nomail.${Z}` },
  /** Forwarded to the silent server. */
  slow: `slow.${Z}`,
} as const;

/** dnsmasq.conf lines for SPF_ZONE; `slow.spf.test` goes to `silentPort`. */
export function spfZoneLines(silentPort: number): string[] {
  const z = SPF_ZONE;
  const txt = (name: string, ...strings: string[]) => `txt-record=${name},${strings.map((s) => `"${s}"`).join(',')}`;
  const lines = [
    `local=/${Z}/`,
    `server=/${z.slow}/127.0.0.1#${silentPort}`,
    txt(z.nested.domain, `v=spf1 ip4:192.0.2.0/24 include:${z.nested.level1} -all`),
    txt(z.nested.level1, `v=spf1 ip6:2001:db8:1::/48 include:${z.nested.level2} ~all`),
    txt(z.nested.level2, 'v=spf1 ip4:198.51.100.0/25 ip4:192.0.2.0/24 -all'),
    txt(z.loop.a, `v=spf1 ip4:203.0.113.1 include:${z.loop.b} -all`),
    txt(z.loop.b, `v=spf1 ip4:203.0.113.2 include:${z.loop.a} -all`),
    txt(z.redirect.domain, `v=spf1 redirect=${z.redirect.target}`),
    txt(z.redirect.target, 'v=spf1 ip4:203.0.113.64/26 -all'),
    txt(z.hosts.domain, `v=spf1 a a:www.${Z}/28 mx/24//64 mx:other.${Z} -all`),
    `host-record=${z.hosts.domain},192.0.2.10,2001:db8:10::10`,
    `host-record=www.${Z},198.51.100.77`,
    `mx-host=${z.hosts.domain},mx1.${Z},10`,
    `mx-host=${z.hosts.domain},mx2.${Z},20`,
    `host-record=mx1.${Z},203.0.113.9,2001:db8:25::9`,
    `host-record=mx2.${Z},203.0.113.200`,
    `mx-host=other.${Z},mx3.${Z},10`,
    `host-record=mx3.${Z},192.0.2.129`,
    txt(z.many.domain, `v=spf1 ${Array.from({ length: z.many.includes }, (_, i) => `include:m${i + 1}.${Z}`).join(' ')} -all`),
    ...Array.from({ length: z.many.includes }, (_, i) => txt(`m${i + 1}.${Z}`, `v=spf1 ip4:100.64.${i + 1}.0/24 -all`)),
    txt(z.manyMx.domain, 'v=spf1 mx -all'),
    ...Array.from({ length: z.manyMx.hosts }, (_, i) => `mx-host=${z.manyMx.domain},mx${i + 1}.many.${Z},${i + 1}`),
    ...Array.from({ length: z.manyMx.hosts }, (_, i) => `host-record=mx${i + 1}.many.${Z},100.65.0.${i + 1}`),
    txt(z.syntax.domain, `v=spf1 ip4:192.0.2.200 ${z.syntax.term} ip4:192.0.2.201 -all`),
    txt(z.two.domain, 'v=spf1 ip4:192.0.2.250 -all'),
    txt(z.two.domain, 'v=spf1 -all'),
    txt(z.missing.domain, `v=spf1 ip4:192.0.2.251 include:${z.missing.noSpf} include:${z.missing.nxdomain} -all`),
    txt(z.missing.noSpf, 'site-verification=abc123'),
    txt(z.badCidr.domain, `v=spf1 ${z.badCidr.terms[0]} ip4:192.0.2.252 ${z.badCidr.terms[1]} ${z.badCidr.terms[2]} -all`),
    txt(z.timeout.domain, `v=spf1 ip4:192.0.2.253 include:${z.timeout.target} -all`),
    txt(z.timeoutA.domain, `v=spf1 ${z.timeoutA.term} ip4:192.0.2.241 -all`),
    txt(z.noAddress.domain, `v=spf1 ${z.noAddress.terms.join(' ')} ip4:192.0.2.240 -all`),
    txt(z.refused.domain, `v=spf1 ip4:192.0.2.254 include:${z.refused.target} -all`),
    txt(
      z.quals.domain,
      `v=spf1 ip4:192.0.2.1 -ip4:192.0.2.2 ~ip4:192.0.2.3 ?ip4:192.0.2.4 ~include:${z.nested.level2} ptr exists:%{i}.x.${Z} include:%{d}.x.${Z} exp=explain.${Z} -all ip4:192.0.2.5`,
    ),
    txt(z.chunked.domain, 'v=spf1 ip4:192.0.2.3', '2/27 -all'),
    txt(z.wide.domain, `v=spf1 ${z.wide.terms.join(' ')} ip4:10.0.0.0/8 +all`),
    txt(z.none.domain, 'v=spf1 -all'),
  ];
  return lines;
}

export interface SpfDnsServer {
  /** `127.0.0.1:PORT`. */
  readonly address: string;
  readonly dnsmasq: Dnsmasq;
  readonly silent: SilentServer;
}

/** One dnsmasq serving SPF_ZONE for a test file, started by the first test that asks (after its requireTool gate). */
export function sharedSpfDns(): { get(): Promise<SpfDnsServer> } {
  let server: Promise<SpfDnsServer> | undefined;
  after(async () => {
    const s = await server?.catch(() => undefined);
    await s?.dnsmasq.stop();
    await s?.silent.stop();
  });
  return {
    get: () =>
      (server ??= (async () => {
        const silent = await startSilentServer();
        try {
          const dnsmasq = await startDnsmasq({ lines: spfZoneLines(silent.port), logQueries: true });
          return { address: dnsmasq.address, dnsmasq, silent };
        } catch (err) {
          await silent.stop();
          throw err;
        }
      })()),
  };
}
