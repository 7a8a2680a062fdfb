/**
 * The log of connections refused at the front door, rate-limited per
 * address: the first refusal of an address is logged at once, later ones in
 * the same window only counted, and each window ends with one line per
 * address that was refused again ("connections refused", with the count).
 * One hostile address opening thousands of connections a second thus writes
 * one line a minute, not thousands, and a flood from many addresses is
 * bounded by `maxAddresses` per window (the rest is one summary line).
 */
import type { Logger } from '../metrics/logger.js';

/** Why the front door refused a connection before serving it (the `refused` field of the log line). */
export type RefusalReason =
  | 'connections'
  | 'per_client'
  | 'reserve'
  | 'tarpit_held'
  | 'tarpit_per_client'
  | 'tarpit_per_group'
  | 'tarpit_memory'
  | 'shutting_down';

/** An address's refusals in the window. */
interface AddressTally {
  /** Refusals since the address's last line. */
  count: number;
  reason: RefusalReason;
}

export interface RefusalLogOptions {
  /** Milliseconds per window; default one minute. */
  readonly windowMs?: number;
  /** Addresses remembered per window; past it refusals are summed into one line. */
  readonly maxAddresses?: number;
}

export class RefusalLog {
  private readonly tallies = new Map<string, AddressTally>();
  /** Refusals of addresses past `maxAddresses` this window. */
  private overflow = 0;
  private readonly maxAddresses: number;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    options: RefusalLogOptions = {},
  ) {
    this.maxAddresses = options.maxAddresses ?? 10_000;
    const windowMs = options.windowMs ?? 60_000;
    if (windowMs > 0) this.timer = setInterval(() => this.flush(), windowMs).unref();
  }

  /**
   * Counts a refusal; true when this one should be logged now (the address's
   * first this window): the caller writes the line, with what it knows.
   */
  note(client: string, reason: RefusalReason): boolean {
    const tally = this.tallies.get(client);
    if (tally !== undefined) {
      tally.count++;
      tally.reason = reason;
      return false;
    }
    if (this.tallies.size >= this.maxAddresses) {
      this.overflow++;
      return false;
    }
    this.tallies.set(client, { count: 0, reason });
    return true;
  }

  /**
   * Ends a window: one line per address refused again since its last line.
   * An address that was refused again stays known, so a flood that goes on
   * writes one line per window and no new "first" line.
   */
  flush(): void {
    for (const [client, tally] of this.tallies) {
      if (tally.count === 0) {
        this.tallies.delete(client);
        continue;
      }
      this.logger.info({ client, refused: tally.reason, count: tally.count }, 'connections refused');
      tally.count = 0;
    }
    if (this.overflow > 0) {
      this.logger.warn({ count: this.overflow, addresses: this.maxAddresses }, 'connections refused from more addresses than the refusal log keeps');
      this.overflow = 0;
    }
  }

  close(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.flush();
  }
}
