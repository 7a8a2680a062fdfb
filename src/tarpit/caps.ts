/**
 * Caps on the tarpit (issue 4 item 3): under a botnet flood, holding is what
 * would exhaust file descriptors and memory, so past a cap a suspicious client
 * is refused at once (421) instead of held. Only held clients are counted:
 * clean clients take the relay path and never meet these caps.
 */
import type { Config } from '../config/schema.js';
import { parseIp } from '../core/ip.js';
import { addressKey, clientGroup } from '../state/client-group.js';
import { tarpitRefusedTotal } from '../metrics/registry.js';
import { zeroSeries } from '../metrics/zero-series.js';
import { tarpitCap } from './metrics.js';

/** Which cap refused a client; also the `cap` label of smtp_tarpit_tarpit_refused_total. */
export const HOLD_CAPS = ['held', 'per_client', 'per_group', 'memory'] as const;
export type HoldCap = (typeof HOLD_CAPS)[number];

zeroSeries(tarpitRefusedTotal, HOLD_CAPS.map((cap) => ({ cap })));

/** The `tarpit` section of the configuration (src/config/schema.ts). */
export type HoldCapsConfig = Config['tarpit'];

export interface HoldCapsClock {
  /** Milliseconds, monotonic enough for a once-a-second sample. */
  readonly now: () => number;
  /** Bytes of resident memory. */
  readonly rss: () => number;
}

/** process.memoryUsage.rss() reads /proc; once a second is plenty for a budget check. */
const RSS_SAMPLE_MS = 1000;

const SYSTEM_CLOCK: HoldCapsClock = { now: () => performance.now(), rss: () => process.memoryUsage.rss() };

export class HoldCaps {
  private held = 0;
  private readonly perClient = new Map<string, number>();
  private readonly perGroup = new Map<string, number>();
  private rss = 0;
  private sampledAt = -Infinity;

  /** The per-network cap's prefix lengths, as clientGroup takes them. */
  private readonly groups: { readonly ipv4: number; readonly ipv6: number };

  constructor(
    private readonly config: HoldCapsConfig,
    private readonly clock: HoldCapsClock = SYSTEM_CLOCK,
  ) {
    this.groups = { ipv4: config.groupIpv4, ipv6: config.groupIpv6 };
    publishCaps(config);
  }

  /** Clients held right now. */
  get size(): number {
    return this.held;
  }

  /**
   * Counts the client in if every cap has room and returns undefined; else
   * returns the cap that is full and counts nothing. The narrowest cap is
   * named first, so a flood from one network shows up as that network's cap.
   * Every admitted client must be released exactly once.
   */
  admit(address: string): HoldCap | undefined {
    const { client, group } = this.keysOf(address);
    const c = this.perClient.get(client) ?? 0;
    if (c >= this.config.maxHeldPerClient) return 'per_client';
    const g = this.perGroup.get(group) ?? 0;
    if (g >= this.config.maxHeldPerGroup) return 'per_group';
    if (this.held >= this.config.maxHeld) return 'held';
    if (this.overMemoryBudget()) return 'memory';
    this.held++;
    this.perClient.set(client, c + 1);
    this.perGroup.set(group, g + 1);
    return undefined;
  }

  /** A held client closed: frees its places. */
  release(address: string): void {
    if (this.held === 0) return;
    this.held--;
    const { client, group } = this.keysOf(address);
    decrement(this.perClient, client);
    decrement(this.perGroup, group);
  }

  /** The client's two keys from one parse of its address (both functions take it parsed). */
  private keysOf(address: string): { client: string; group: string } {
    const ip = parseIp(address) ?? address;
    return { client: addressKey(ip), group: clientGroup(ip, this.groups) };
  }

  private overMemoryBudget(): boolean {
    if (this.config.memoryBudget <= 0) return false;
    const now = this.clock.now();
    if (now - this.sampledAt >= RSS_SAMPLE_MS) {
      this.rss = this.clock.rss();
      this.sampledAt = now;
    }
    return this.rss > this.config.memoryBudget;
  }
}

/** The caps as configured, for alerts that divide held clients by them (fixed until a restart). */
function publishCaps(config: HoldCapsConfig): void {
  const caps: Record<HoldCap, number> = {
    held: config.maxHeld,
    per_client: config.maxHeldPerClient,
    per_group: config.maxHeldPerGroup,
    memory: config.memoryBudget,
  };
  for (const [cap, value] of Object.entries(caps)) tarpitCap.set({ cap }, value);
}

/** Deletes a key at zero, so the maps hold only clients held right now. */
function decrement(map: Map<string, number>, key: string): void {
  const n = map.get(key);
  if (n === undefined) return;
  if (n <= 1) map.delete(key);
  else map.set(key, n - 1);
}
