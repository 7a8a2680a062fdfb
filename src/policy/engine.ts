/**
 * The policy engine: runs the checks for one Policy and hands each session a
 * SessionPolicy. Connect-stage checks (lists, rate, DNSBL/DNSWL, FCrDNS) run
 * here, in parallel where they wait on DNS; later evidence (HELO, protocol,
 * harvest) arrives through the methods the front door, the relay hooks and the
 * tarpit call as the session goes on.
 *
 * The engine holds no state of its own beyond its Policy: what must outlive a
 * reload (DNS cache, and the StateStore: allowlist cache, rate and harvest
 * windows, reputation, greylist) lives in `PolicyState`, shared by every
 * engine the process builds. The store is asked once at connect
 * (`StateStore.connect`) and told once at the end (`finish`); a memory store
 * answers synchronously and the engine then awaits nothing for it.
 */
import { parseIp, type Ip } from '../core/ip.js';
import type { Evidence, Verdict } from './evidence.js';
import { checkAllow, checkBlock } from './checks/lists.js';
import { checkDnsZones, type ZoneCheck, type ZoneLookup } from './checks/dns-zones.js';
import { checkRdns, type RdnsCheck } from './checks/rdns.js';
import { checkRate } from './checks/rate.js';
import { checkHelo } from './checks/helo.js';
import { checkHarvest } from './checks/harvest.js';
import { greylistDefers, greylistExemption, greylistTriplet } from './checks/greylist.js';
import { checkPass, messageFingerprint, type Pass, type DeferredMessage } from './checks/allowlist-pass.js';
import { checkKnownSender, type KnownSender } from './checks/known-sender.js';
import { checkReputation } from './checks/reputation.js';
import type { DnsClient } from './dns/dns-client.js';
import { checksTotal, escalationsTotal, verdictsTotal } from './metrics.js';
import { DNS_RESULTS, dnsLookupSeconds } from './dns/metrics.js';
import { labelProduct, zeroSeries } from '../metrics/zero-series.js';
import { SessionPolicy } from './session-policy.js';
import type { Policy } from './spec.js';
import { addressKey, clientGroup } from '../state/client-group.js';
import { when, type MaybePromise } from '../state/maybe-promise.js';
import { allowlistCacheTotal } from '../state/metrics.js';
import type { AllowlistOutcome, AllowlistWrite, GreylistOutcome, ReputationSnapshot, SessionOutcome, StateStore } from '../state/store.js';
import type { Tally } from '../metrics/tally-counter.js';

/** What every engine shares and keeps across policy reloads. */
export interface PolicyState {
  readonly dns: DnsClient;
  readonly store: StateStore;
}

/** Who we are, for the HELO check ("claims to be us"). */
export interface Identity {
  readonly hostname: string;
  readonly addresses: readonly string[];
}

export interface VetOptions {
  /** Look up the client's FCrDNS name even when the rdns weights are 0 (it is passed on as XCLIENT NAME). */
  readonly needName: boolean;
  /** Count the session in the rate windows and its group's concurrency (false for `explain`). */
  readonly count: boolean;
}

/** Each DNS zone's outcome and what the store knew, for `explain`. */
export interface VetReport {
  readonly lookups: readonly ZoneLookup[];
  /** The client's own address passed a hold before (the allowlist cache), so the DNS checks were skipped. */
  readonly cached: boolean;
  /** The client's network's history as the store gave it (absent for an allow-listed client: the store is not asked). */
  readonly reputation?: ReputationSnapshot;
}

export class PolicyEngine {
  /** Whether this policy itself needs the client's FCrDNS name (rDNS weights, known senders by name): decided once per policy, not per connection. */
  readonly #policyNeedsName: boolean;
  /** Whether the allowlist network is the rate group (the shipped /24 and /64): its key is then the one vet computes anyway. Decided per policy. */
  readonly #networkIsGroup: boolean;

  constructor(
    readonly policy: Policy,
    private readonly state: PolicyState,
    private readonly us: Identity,
  ) {
    this.#policyNeedsName =
      policy.rdns.missing > 0 || policy.rdns.unconfirmed > 0 || ((policy.firstContact.enabled || policy.greylisting.enabled) && policy.knownSenders.rdnsSuffixes.length > 0);
    const { network } = policy.allowlistCache;
    this.#networkIsGroup = network.ipv4 === policy.rate.group.ipv4 && network.ipv6 === policy.rate.group.ipv6;
    // This policy's zones are known now: their lookup series exist before the first lookup.
    const zones = [...policy.dnsbl, ...policy.dnswl].map((z) => z.zone);
    zeroSeries(dnsLookupSeconds, labelProduct({ zone: this.#policyNeedsName ? [...zones, 'rdns'] : zones, result: DNS_RESULTS }));
  }

  /**
   * The connect-stage checks for a new client; the session then carries the
   * result. The address is parsed once here and every check gets the parsed
   * form. A check whose DNS answers are all cached answers at once, so a
   * client we have seen the answers for is vetted without waiting on a
   * promise per lookup; only lookups that go to the resolver are awaited.
   */
  async vet(address: string, options: VetOptions): Promise<{ session: SessionPolicy; report: VetReport }> {
    const { policy, state } = this;
    // Text that is not an IP address (a Unix socket peer) stays text: no list holds it, no DNS name is built for it.
    const ip = parseIp(address);
    const client = ip ?? address;
    const allow = checkAllow(client, policy);
    if (allow) {
      const session = new SessionPolicy({ policy, address, trusted: true });
      record('allow', true);
      session.add(allow);
      if (options.needName) session.clientName = (await this.#rdns(address, ip)).name;
      verdictTallies[session.verdict].inc();
      return { session, report: { lookups: [], cached: false } };
    }
    const group = clientGroup(client, policy.rate.group);
    const session = new SessionPolicy({ policy, address, trusted: false, group });
    record('allow', false);

    // One question to the store for everything the connect stage remembers; a memory store answers now.
    const now = Date.now();
    const network = ip === undefined ? undefined : this.#allowlistNetwork(ip, group);
    const asked = state.store.connect({ client: ip === undefined ? address : addressKey(ip), group, network, count: options.count }, now);
    const known = asked instanceof Promise ? await asked : asked;
    if (known.slot) session.occupy(known.slot);
    // Weighed after the known-sender rules: a big sender's pool opens many sessions at once.
    const rate = options.count ? checkRate(known.rate, policy) : undefined;
    if (options.count) record('rate', counts(rate));
    const block = checkBlock(client, policy);
    record('block', counts(block));
    if (block) session.add(block);
    const reputation = checkReputation(known.reputation, policy);
    if (policy.reputation.enabled) record('reputation', counts(reputation));
    if (reputation) session.add(reputation);

    const pass = checkPass(known.allowlist, now, policy);
    if (options.count) passTallies[pass.kind].inc();
    let lookups: readonly ZoneLookup[] = [];
    if (pass.kind === 'address') {
      // A client that passed before skips the costly checks and the hold (postscreen's PASS OLD).
      session.passed = 'address';
      session.add(pass.evidence);
      if (rate) session.add(rate);
      if (options.needName) session.clientName = (await this.#rdns(address, ip)).name;
    } else {
      const bl = checkDnsZones(client, policy.dnsbl, 'dnsbl', state.dns);
      const wl = checkDnsZones(client, policy.dnswl, 'dnswl', state.dns);
      // The known-sender rules need the name too.
      const rdns = options.needName || this.#policyNeedsName ? this.#rdns(address, ip) : undefined;
      if (bl instanceof Promise || wl instanceof Promise || rdns instanceof Promise) lookups = addDnsEvidence(session, ...(await Promise.all([bl, wl, rdns])));
      else lookups = addDnsEvidence(session, bl, wl, rdns);
      this.#vouch(session, client, rate, pass);
    }
    verdictTallies[session.held && session.verdict === 'pass' ? 'tarpit' : session.verdict].inc();
    return { session, report: { lookups, cached: pass.kind === 'address', reputation: known.reputation } };
  }

  /**
   * Who vouches for a client the allowlist cache did not pass by its own
   * address: a known-sender rule, or its network's pass. Nobody: it is a
   * first contact, held before it may deliver; one that came back
   * too soon after its 451 is held again, with the early retry as evidence.
   */
  #vouch(session: SessionPolicy, client: string | Ip, rate: Evidence | undefined, pass: Pass): void {
    const policy = session.policy;
    // Known senders matter only to the first-contact hold and greylisting: with both off, nobody is asked.
    let known: KnownSender | undefined;
    if (policy.firstContact.enabled || policy.greylisting.enabled) {
      known = checkKnownSender({ address: client, clientName: session.clientName, score: session.score.total }, policy);
      record('known-sender', known !== undefined);
    }
    if (known !== undefined) {
      session.knownSender = known.rule;
      session.add(known.evidence);
    } else if (rate) session.add(rate);
    if (pass.kind === 'network') {
      session.passed = 'network';
      session.add(pass.evidence);
    } else if (pass.kind === 'early' && known === undefined) {
      record('early-retry', true);
      session.returnedEarly = true;
      session.add(pass.evidence);
    }
    session.firstContact = policy.firstContact.enabled && known === undefined && session.passed === undefined;
    if (session.firstContact) session.add(pass.kind === 'early' ? HELD_AGAIN : FIRST_CONTACT);
  }

  /** The client's allowlist network (allowlistCache.network), or undefined when network passes are off. */
  #allowlistNetwork(ip: Ip, group: string): string | undefined {
    const network = this.policy.allowlistCache.network;
    if (!network.enabled) return undefined;
    return this.#networkIsGroup ? group : clientGroup(ip, network);
  }

  #rdns(address: string, ip: Ip | undefined): MaybePromise<RdnsCheck> {
    return checkRdns(address, this.policy.rdns, this.state.dns, ip);
  }

  /** HELO/EHLO name, checked once per session at the first stage that knows it. */
  helo(session: SessionPolicy, name: string | undefined): boolean {
    if (session.trusted || name === undefined || name === '' || !session.once('helo')) return false;
    const evidence = checkHelo(name, session.address, this.us, session.policy.helo);
    record('helo', evidence.some(counts));
    return escalate(session, evidence);
  }

  /** Protocol evidence observed by the front door or the hold (pregreet, pipelining, bare LF, non-SMTP). */
  observe(session: SessionPolicy, evidence: Evidence | undefined): boolean {
    if (!evidence || !session.once(evidence.check)) return false;
    record(evidence.check, counts(evidence));
    return escalate(session, evidence);
  }

  /**
   * The backend refused a recipient (5xx): a dictionary attack shows as many
   * of these. Answers later with a shared store: await it before the next
   * command so an escalation is in force for it.
   */
  recipientRejected(session: SessionPolicy, rejectedInSession: number): MaybePromise<boolean> {
    if (session.trusted) return false;
    const policy = session.policy;
    return when(this.state.store.harvest(groupOf(session), policy.harvest.window, Date.now()), (inWindow) => {
      const evidence = checkHarvest(rejectedInSession, inWindow, policy);
      if (!evidence || !session.once('harvest')) return false;
      record('harvest', counts(evidence));
      return escalate(session, evidence);
    });
  }

  /**
   * A held client sat its hold out and behaved: remember it, and its network
   * unless that network's history is bad, so its retry (or a neighbour's, a
   * pool's) is relayed at once. `deferred`: the message it was told 451 for
   * (its retry counts only after `firstContact.minRetryDelay`, and the same
   * message deferred again restarts that pause); undefined for a greet
   * wait's survivor, relayed in the same connection, which counts at once.
   */
  survived(session: SessionPolicy, deferred: DeferredMessage | undefined): MaybePromise<AllowlistOutcome> {
    return this.#remember(session, {
      reason: deferred ? 'sat the first-contact hold out, told to retry' : 'sat the greet wait out, relayed',
      deferred: deferred !== undefined,
      message: deferred && messageFingerprint(deferred),
    });
  }

  /**
   * A client that came back too soon was held again and deferred again,
   * with the same message: its pause starts over, whichever profile held it
   * (a bot hammering with one message never gets through on the first
   * pause), and the pass it earned its network is withdrawn: the neighbours
   * of a bot are not vouched for by its patience. Nothing is added for a
   * client that has no entry.
   */
  deferredAgain(session: SessionPolicy, message: DeferredMessage): MaybePromise<AllowlistOutcome> {
    return this.#remember(session, { reason: 'came back too soon, deferred again', deferred: true, message: messageFingerprint(message), restartOnly: true });
  }

  /** One allowlist write for `session`'s address and, when network passes are on, its network. */
  #remember(session: SessionPolicy, what: Pick<AllowlistWrite, 'reason' | 'deferred' | 'message' | 'restartOnly'>): MaybePromise<AllowlistOutcome> {
    const policy = session.policy;
    const ip = parseIp(session.address);
    const group = groupOf(session);
    // The session's engine is this one: its network key is the one vet computed (the rate group when they coincide).
    const key = ip === undefined ? undefined : this.#allowlistNetwork(ip, group);
    return this.state.store.allowlist(
      {
        ...what,
        client: ip === undefined ? session.address : addressKey(ip),
        ttl: policy.allowlistCache.ttl,
        network: key === undefined ? undefined : { key, ttl: policy.allowlistCache.network.ttl, reputationGroup: group },
      },
      Date.now(),
    );
  }

  /**
   * Why a session is not greylisted, or undefined when its recipients are:
   * greylisting off, a session the policy would not relay anyway (held,
   * refused: it never reaches the backend), or an exemption.
   */
  greylistExempt(session: SessionPolicy): string | undefined {
    const policy = session.policy;
    if (!policy.greylisting.enabled) return 'greylisting is off';
    if (session.verdict !== 'pass') return `verdict ${session.verdict}: never relayed`;
    if (session.held) return 'held as a first contact: never relayed';
    return greylistExemption(session);
  }

  /**
   * Greylisting at RCPT (issue 6): the triplet's outcome, or undefined for an
   * exempt session. The store counts outcomes (smtp_tarpit_greylist_total).
   */
  greylist(session: SessionPolicy, sender: string, recipient: string): MaybePromise<GreylistOutcome | undefined> {
    if (this.greylistExempt(session) !== undefined) return undefined;
    const policy = session.policy;
    const outcome = this.state.store.greylist(greylistTriplet(session.address, sender, recipient, policy), policy.greylisting, Date.now());
    return when(outcome, (o) => {
      checkTally('greylist', greylistDefers(o) ? 'hit' : 'miss').inc();
      return o;
    });
  }

  /**
   * The relay path ended the session at a limit only a trickling client meets
   * (limits.minDataRate, limits.sessionTimeout): a bot's way of holding a
   * backend connection, so a tarpit signal. It weighs nothing here (the
   * session is over); it names the reason in the session's log line, and the
   * network learns of it through the `bad` outcome the relay path gives finish().
   */
  trickled(session: SessionPolicy, reason: string): void {
    if (!session.once('trickle')) return;
    record('trickle', true);
    session.add({ check: 'trickle', weight: 0, class: 'protocol', reason });
  }

  /**
   * The session is over: its outcome goes into its network's reputation, once
   * (the relay path and the hold each end a session; a hand-over from the
   * hold to the relay path ends it once, on the relay path). Allow-listed
   * clients are not tracked: nothing about them is ever decided by history.
   */
  finish(session: SessionPolicy, outcome: SessionOutcome): void {
    if (session.trusted || !session.once('finish')) return;
    this.state.store.finish(groupOf(session), outcome, Date.now(), session.takeSlot());
  }
}

/** The session's rate group, as vet computed it (recomputed only for a session built elsewhere, e.g. by a test). */
function groupOf(session: SessionPolicy): string {
  return session.group ?? clientGroup(session.address, session.policy.rate.group);
}

/** Evidence after the connect stage: a rise in the verdict now is an escalation. */
function escalate(session: SessionPolicy, evidence: Evidence | readonly Evidence[]): boolean {
  const escalated = session.add(evidence);
  if (escalated) escalationsTotal.inc({ verdict: session.verdict });
  return escalated;
}

/**
 * What the DNS checks found, added to a client nobody has vouched for yet;
 * returns the zones' lookups for the report. Same order of evidence whether
 * the answers came from the cache or the resolver.
 */
function addDnsEvidence(session: SessionPolicy, bl: ZoneCheck, wl: ZoneCheck, rdns: RdnsCheck | undefined): ZoneLookup[] {
  const lookups = [...bl.lookups, ...wl.lookups];
  for (const zones of [bl, wl]) {
    for (const l of zones.lookups) checkTally(zones.kind, l.result === 'listed' ? 'hit' : l.result === 'not-listed' ? 'miss' : 'error').inc();
    session.add(zones.evidence);
  }
  if (rdns) {
    record('rdns', rdns.evidence.some(counts));
    session.add(rdns.evidence);
    session.clientName = rdns.name;
  }
  return lookups;
}

const FIRST_CONTACT: Evidence = Object.freeze({ check: 'first-contact', weight: 0, reason: 'not seen before: held before it may deliver', class: 'first-contact' });
const HELD_AGAIN: Evidence = Object.freeze({ check: 'first-contact', weight: 0, reason: 'back before its pause was over: held again before it may deliver', class: 'first-contact' });

/** Whether evidence counts as a hit in smtp_tarpit_checks_total: it weighs something, or it vouches for the client. */
function counts(evidence: Evidence | undefined): boolean {
  return evidence !== undefined && (evidence.weight !== 0 || evidence.class === 'allowlisted');
}

function record(check: string, hit: boolean): void {
  checkTally(check, hit ? 'hit' : 'miss').inc();
}

type CheckResult = 'hit' | 'miss' | 'error';

/** Per check name (a closed set: the checks in this engine and the protocol observations), bound on first use. */
const checkTallies = new Map<string, Record<CheckResult, Tally>>();

function checkTally(check: string, result: CheckResult): Tally {
  let tallies = checkTallies.get(check);
  if (tallies === undefined) {
    tallies = { hit: checksTotal.tally({ check, result: 'hit' }), miss: checksTotal.tally({ check, result: 'miss' }), error: checksTotal.tally({ check, result: 'error' }) };
    checkTallies.set(check, tallies);
  }
  return tallies[result];
}

// Every check this engine can record, bound now so that each series exists from the start (src/metrics/zero-series.ts).
for (const check of ['allow', 'block', 'rate', 'reputation', 'known-sender', 'early-retry', 'helo', 'harvest', 'trickle', 'rdns', 'greylist', 'dnsbl', 'dnswl', 'pregreet', 'protocol.pipelining', 'protocol.bareLf', 'protocol.nonSmtp']) {
  checkTally(check, 'hit');
}

/** smtp_tarpit_allowlist_cache_total by what the cache's entries were worth. */
const passTallies: Readonly<Record<Pass['kind'], Tally>> = {
  address: allowlistCacheTotal.tally({ result: 'hit' }),
  network: allowlistCacheTotal.tally({ result: 'network' }),
  early: allowlistCacheTotal.tally({ result: 'early' }),
  miss: allowlistCacheTotal.tally({ result: 'miss' }),
};

const verdictTallies: Readonly<Record<Verdict, Tally>> = {
  pass: verdictsTotal.tally({ verdict: 'pass' }),
  tarpit: verdictsTotal.tally({ verdict: 'tarpit' }),
  reject: verdictsTotal.tally({ verdict: 'reject' }),
  drop: verdictsTotal.tally({ verdict: 'drop' }),
};
