/**
 * What the policy remembers about clients (docs/design.md §3 state), behind one
 * interface with two implementations: `memory` (lru-cache, one process) and
 * `redis` (a fleet of MX hosts sharing what they learn).
 *
 * Shaped by round trips, not by data structures: everything the connect
 * stage needs (allowlist cache, the group's connection counts, its
 * reputation) comes from one `connect` call, and everything a session leaves
 * behind goes in one `finish` call, so a clean session costs a shared store
 * two round trips (issue 6's budget). Greylisting and harvest counts are
 * asked only when a session gets that far.
 *
 * Results are MaybePromise (maybe-promise.ts): the memory store answers at
 * once and must not pay a promise per call; a shared store answers later.
 * A shared store never rejects and never makes a session wait longer than
 * its timeout: on error it answers from a local memory store and counts a
 * fallback (mail flow first).
 *
 * Keys are computed by the caller (client-group.ts), never by the store: one
 * client always gives one key, whichever store holds it.
 */
import type { MaybePromise } from './maybe-promise.js';

export interface RateSnapshot {
  /** Sessions open now in the group (this one included when counted). */
  readonly concurrent: number;
  /** Sessions opened in the last minute in the group (this one included when counted). */
  readonly perMinute: number;
}

/**
 * A group's recent history (karma-style), decayed: each count halves every
 * `halfLife` seconds of the reputation settings, so old behaviour fades.
 */
export interface ReputationSnapshot {
  /** Sessions that showed themselves bots: refused, dropped, or hung up while held. Decayed, so fractional. */
  readonly bad: number;
  /** Sessions that delivered a message (backend said 250). Decayed. */
  readonly good: number;
}

export interface ConnectQuery {
  /** The client's address key (client-group.ts `addressKey`): the allowlist cache's key. */
  readonly client: string;
  /** The client's rate group (client-group.ts `clientGroup`, /24 or /64 by default): rate counts and reputation. */
  readonly group: string;
  /** The client's allowlist network (client-group.ts `clientGroup` with the policy's `allowlistCache.network`), when network passes are on. */
  readonly network?: string;
  /** Count this session in the group's rates and concurrency (false for `explain`: look, don't touch). */
  readonly count: boolean;
}

/** A session's place in its group's concurrency count; `release` gives it back (only the first call counts). */
export interface RateSlot {
  release(): void;
}

/**
 * A pass in the allowlist cache (issue 11): when it was earned and whether the
 * client was told to retry then. A deferred pass counts for a retry only
 * after the policy's pause (retry-delay.ts); one earned without a deferral (a
 * greet wait's hand-over) counts at once. The store keeps it; the policy
 * decides what it is worth.
 */
export interface AllowlistMark {
  /** When, ms since the epoch (as `now`). */
  readonly since: number;
  /** The client was deferred (451) when it passed: its retry counts only after a pause. */
  readonly deferred: boolean;
}

/** The allowlist cache's entries for one client: its own address's, and its network's (absent when unknown, expired, or not asked). */
export interface AllowlistMarks {
  readonly address?: AllowlistMark;
  readonly network?: AllowlistMark;
}

export interface ConnectState {
  /** The client's (and its network's) unexpired allowlist-cache entries. */
  readonly allowlist: AllowlistMarks;
  readonly rate: RateSnapshot;
  readonly reputation: ReputationSnapshot;
  /** Present when the session was counted: release it when the session ends. */
  readonly slot?: RateSlot;
}

/** How a session ended, for its group's reputation. */
export type SessionOutcome =
  /** A message was delivered (the backend said 250). */
  | 'delivered'
  /** Refused or dropped by the policy, hung up while held, or cut off for trickling (limits.minDataRate, limits.sessionTimeout). */
  | 'bad'
  /** Nothing to learn from (a clean session that sent nothing, a shutdown). */
  | 'neutral';

export interface GreylistSettings {
  /** Seconds before a retry of a new triplet is accepted. */
  readonly minDelay: number;
  /** Seconds a triplet waits for its retry before it is forgotten. */
  readonly pendingExpiry: number;
  /** Seconds a network that passed is let through without greylisting (auto-allowlist). */
  readonly passedExpiry: number;
}

/** A greylisting triplet: the client's network (grouped: big senders retry from a neighbour), sender and recipient. */
export interface GreylistKey {
  readonly network: string;
  readonly sender: string;
  readonly recipient: string;
}

export type GreylistOutcome =
  /** First time this triplet is seen: recorded, told to retry (451). */
  | 'new'
  /** Seen before, but sooner than `minDelay`: told to retry again. */
  | 'early'
  /** Retried within the window: let through, and the network is auto-allowlisted for `passedExpiry`. */
  | 'passed'
  /** The network passed before and its pass has not expired: let through. */
  | 'allowlisted'
  /** Seen before, but the retry came after `pendingExpiry`: recorded anew, told to retry. */
  | 'expired';

/** What `allowlist` records. */
export interface AllowlistWrite {
  /** The client's address key (client-group.ts `addressKey`). */
  readonly client: string;
  /** Why, for `explain` and logs ("survived the first-contact hold"). */
  readonly reason: string;
  /** Seconds the address entry lives (policy `allowlistCache.ttl`). */
  readonly ttl: number;
  /** The client was told to retry (451): its retry counts only after the pause. */
  readonly deferred: boolean;
  /** The deferred message's fingerprint (its envelope: policy/checks/allowlist-pass.ts), so a retry of the same message can be told from the next one. */
  readonly message?: string;
  /**
   * Add nothing: only restart the address's entry if it names the same
   * message (a client held again for returning too soon, deferred again with
   * the same message, whichever profile held it). When it does, the client
   * showed itself no MTA, and the pass its network earned (`network`, its
   * key) is dropped rather than written.
   */
  readonly restartOnly?: boolean;
  /** Its network too (policy `allowlistCache.network`), absent when network passes are off. */
  readonly network?: {
    /** The network key (client-group.ts `clientGroup` with the allowlist network's prefixes). */
    readonly key: string;
    /** Seconds the network entry lives. */
    readonly ttl: number;
    /** The client's rate group, whose reputation decides: a network whose bad sessions outnumber its delivered ones (at least one) is not remembered. */
    readonly reputationGroup: string;
  };
}

/**
 * What `allowlist` did: each entry `added`, or `kept` (one was there
 * already); the address `restarted` when the same message was deferred again
 * (its pause starts over); the network `bad-reputation` when its history
 * kept it out, `dropped` when a restart withdrew its pass.
 */
export interface AllowlistOutcome {
  readonly address: 'added' | 'kept' | 'restarted';
  readonly network?: 'added' | 'kept' | 'bad-reputation' | 'dropped';
}

export interface StoreHealth {
  readonly kind: 'memory' | 'redis';
  /** A shared store that answers from its local fallback right now is degraded, not down: mail still flows. */
  readonly degraded: boolean;
  readonly reason?: string;
}

/**
 * Settings a policy load applies to the store (PolicyStore.applyState).
 * Each is optional: what is left out stays as it was.
 */
export interface StoreSettings {
  /** Policy `allowlistCache`: TTL (seconds) and most entries (the memory store's bound; Redis keys carry the TTL given to `allowlist()`). */
  readonly allowlistCache?: { readonly ttl: number; readonly maxEntries: number };
  /** Policy `harvest.window`, seconds (also passed to each `harvest()` call, which wins). */
  readonly harvestWindow?: number;
  /** Policy `reputation.halfLife`, seconds: a count halves in this long. Default 86,400. */
  readonly reputationHalfLife?: number;
}

export interface StateStore {
  readonly kind: 'memory' | 'redis';

  /** Applies a (re)loaded policy's settings; entries already stored are kept. */
  configure(settings: StoreSettings): void;

  /** The connect stage's reads and (when `count`) writes, in one round trip. */
  connect(query: ConnectQuery, now: number): MaybePromise<ConnectState>;

  /**
   * The session is over: record its outcome in the group's reputation. One
   * write; the session never waits for it. Pass the session's `slot` (from
   * `connect`) to release it in the same write: a shared store then spends
   * one round trip on both, where `slot.release()` and `finish()` would spend
   * two. Releasing a slot twice, either way, counts once.
   */
  finish(group: string, outcome: SessionOutcome, now: number, slot?: RateSlot): void;

  /**
   * Remembers that a client passed (a survivor of a hold), and its network
   * with it unless the network's reputation is bad. An entry already there
   * keeps its time: an MTA held again before its pause was over because it
   * sent its next queued message must not push its own pause back, nor a
   * pool's next survivor its network's. Only the same message deferred again
   * (`message` equal to the entry's) restarts the address's pause: that was
   * a retry too soon, which a bot hammering with one message does.
   */
  allowlist(write: AllowlistWrite, now: number): MaybePromise<AllowlistOutcome>;

  /** Counts a recipient the backend refused for `group`; returns the count within the last `window` seconds, this one included. */
  harvest(group: string, window: number, now: number): MaybePromise<number>;

  /** Looks up and updates a greylisting triplet. */
  greylist(key: GreylistKey, settings: GreylistSettings, now: number): MaybePromise<GreylistOutcome>;

  /** A read-only view for `explain`: nothing counted, nothing refreshed. */
  peekGreylist(key: GreylistKey, settings: GreylistSettings, now: number): MaybePromise<{ readonly state: 'unknown' | 'pending' | 'passed'; readonly since?: number }>;

  health(): StoreHealth;

  /** Closes connections; in-flight writes get a short grace. */
  close(): Promise<void>;
}
