/**
 * Connection caps (docs/design.md §4.5): at most `maxConnections` open at once,
 * at most `maxConnectionsPerClient` from one address (more for an address on
 * the allow list), and the last `cleanReserve` share of the total kept for
 * clients the policy relays. The per-address map holds only addresses with
 * open connections, so it is bounded by the total cap.
 *
 * Nothing here allocates for a refusal: under a flood the refusals are the
 * common case, and each must cost no more than a few comparisons.
 */
export type CapRefusal = 'connections' | 'per_client' | 'reserve';
/** The caps decided on the address alone, before vetting. */
export type AddressCap = Exclude<CapRefusal, 'reserve'>;

export interface ConnectionLimitsConfig {
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  readonly maxConnectionsPerAllowedClient: number;
  readonly cleanReserve: number;
}

export class ConnectionLimits {
  private total = 0;
  private readonly perClient = new Map<string, number>();
  /** Open connections up to which a client the policy would not relay may keep its slot. */
  private readonly unreserved: number;
  private readonly maxAllowed: number;

  /** `isAllowed`: whether an address is on the allow list, asked only for one already at the ordinary per-client cap. */
  constructor(
    private readonly config: ConnectionLimitsConfig,
    private readonly isAllowed: (address: string) => boolean,
  ) {
    this.unreserved = config.maxConnections - Math.floor(config.maxConnections * config.cleanReserve);
    // A partner on the allow list never gets less than anyone else.
    this.maxAllowed = Math.max(config.maxConnectionsPerAllowedClient, config.maxConnectionsPerClient);
  }

  get open(): number {
    return this.total;
  }

  /** Counts a new socket against the total cap; undefined means admitted. */
  admit(): 'connections' | undefined {
    if (this.total >= this.config.maxConnections) return 'connections';
    this.total++;
    return undefined;
  }

  /** Counts an admitted socket against its client's cap (after any PROXY header named the real client). */
  admitClient(address: string): 'per_client' | undefined {
    const n = this.perClient.get(address) ?? 0;
    if (n >= this.config.maxConnectionsPerClient && (n >= this.maxAllowed || !this.isAllowed(address))) return 'per_client';
    this.perClient.set(address, n + 1);
    return undefined;
  }

  /**
   * Whether a vetted client the policy would hold may keep its slot: not once
   * the open connections (its own included) reach into the clean reserve.
   */
  roomForUnrelayed(): CapRefusal | undefined {
    return this.total > this.unreserved ? 'reserve' : undefined;
  }

  release(): void {
    this.total--;
  }

  releaseClient(address: string): void {
    const n = (this.perClient.get(address) ?? 1) - 1;
    if (n <= 0) this.perClient.delete(address);
    else this.perClient.set(address, n);
  }
}
