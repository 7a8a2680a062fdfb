/**
 * The policy of bench/hold.ts: the relay benches' policy (bench-policies.ts:
 * the shipped one, first contact off, rDNS weights 0, rate limits raised) with
 * every loopback client but one in `block.cidr`, so the hold client's
 * 127.A.B.1 addresses are all held by the `tarpit` profile while 127.0.0.1,
 * in `allow.cidr`, is relayed at once (the clean session the bench times).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

/** 127.0.0.0/8 minus one address, as the fewest CIDRs (one per prefix length, /9 to /32). */
export function loopbackExcept(address: string): string[] {
  const parts = address.split('.').map(Number);
  const ip = (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
  const out: string[] = [];
  for (let len = 9; len <= 32; len++) {
    // The half of the /(len-1) around `address` that does not hold it.
    const shift = 32 - len;
    const net = (((ip >>> shift) ^ 1) << shift) >>> 0;
    out.push(`${net >>> 24}.${(net >>> 16) & 255}.${(net >>> 8) & 255}.${net & 255}/${len}`);
  }
  return out;
}

export function blockAllLoopbackBut(policyDir: string, address: string): void {
  writeFileSync(join(policyDir, 'block.cidr'), `# bench/hold.ts: all of 127.0.0.0/8 but ${address}\n${loopbackExcept(address).join('\n')}\n`);
  writeFileSync(join(policyDir, 'allow.cidr'), `# bench/hold.ts: the clean client\n${address}/32\n`);
}

/** The `tarpit` profile: `delay` seconds before every reply, `stutter` bytes/s (0: key left out, for builds without it). */
export function holdPolicy(policyDir: string, o: { delay: number; stutter: number }): void {
  const file = join(policyDir, 'policy.yaml');
  const policy = parse(readFileSync(file, 'utf8')) as Record<string, Record<string, unknown>>;
  const profiles = policy.profiles ?? {};
  profiles.tarpit = {
    delays: { banner: o.delay, helo: o.delay, mail: o.delay, rcpt: o.delay, data: Math.min(o.delay, 120) },
    ...(o.stutter > 0 ? { stutter: o.stutter } : {}),
    end: { reply: 451, text: '4.7.1 Service temporarily unavailable, try again later' },
  };
  policy.profiles = profiles;
  writeFileSync(file, stringify(policy));
}
