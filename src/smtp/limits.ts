/**
 * Connection caps (docs/design.md §4.5): at most `maxConnections` open at once and at
 * most `maxConnectionsPerClient` from one address. The per-address map holds
 * only addresses with open connections, so it is bounded by the total cap.
 */
export type CapRefusal = 'connections' | 'per_client';

export class ConnectionLimits {
  private total = 0;
  private readonly perClient = new Map<string, number>();

  constructor(
    private readonly maxConnections: number,
    private readonly maxPerClient: number,
  ) {}

  get open(): number {
    return this.total;
  }

  /** Counts a new socket against the total cap; undefined means admitted. */
  admit(): CapRefusal | undefined {
    if (this.total >= this.maxConnections) return 'connections';
    this.total++;
    return undefined;
  }

  /** Counts an admitted socket against its client's cap (after any PROXY header named the real client). */
  admitClient(address: string): CapRefusal | undefined {
    const n = this.perClient.get(address) ?? 0;
    if (n >= this.maxPerClient) return 'per_client';
    this.perClient.set(address, n + 1);
    return undefined;
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
