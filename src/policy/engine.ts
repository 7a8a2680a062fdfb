/**
 * The policy engine: runs the checks for one Policy and hands each session a
 * SessionPolicy. Connect-stage checks (lists, rate, DNSBL/DNSWL, FCrDNS) run
 * here, in parallel where they wait on DNS; later evidence (HELO, protocol,
 * harvest) arrives through the methods the front door, the relay hooks and the
 * tarpit call as the session goes on.
 *
 * The engine holds no state of its own beyond its Policy: what must outlive a
 * reload (DNS cache, allowlist cache, rate and harvest windows) lives in
 * `PolicyState`, shared by every engine the process builds.
 */
import type { Evidence } from './evidence.js';
import { checkAllow, checkBlock } from './checks/lists.js';
import { checkDnsZones, type ZoneLookup } from './checks/dns-zones.js';
import { checkRdns } from './checks/rdns.js';
import { checkRate } from './checks/rate.js';
import { checkHelo } from './checks/helo.js';
import { checkHarvest } from './checks/harvest.js';
import type { DnsClient } from './dns/dns-client.js';
import { checksTotal, escalationsTotal, verdictsTotal } from './metrics.js';
import { SessionPolicy } from './session-policy.js';
import type { Policy } from './spec.js';
import type { AllowlistCache } from '../state/allowlist-cache.js';
import { clientGroup } from '../state/client-group.js';
import type { HarvestWindow } from '../state/harvest-window.js';
import type { RateLimiter } from '../state/rate-limiter.js';

/** What every engine shares and keeps across policy reloads. */
export interface PolicyState {
  readonly dns: DnsClient;
  readonly allowlist: AllowlistCache;
  readonly rates: RateLimiter;
  readonly harvest: HarvestWindow;
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

/** Each DNS zone's outcome, for `explain`. */
export interface VetReport {
  readonly lookups: readonly ZoneLookup[];
  readonly cached: boolean;
}

export class PolicyEngine {
  constructor(
    readonly policy: Policy,
    private readonly state: PolicyState,
    private readonly us: Identity,
  ) {}

  /** The connect-stage checks for a new client; the session then carries the result. */
  async vet(address: string, options: VetOptions): Promise<{ session: SessionPolicy; report: VetReport }> {
    const { policy, state } = this;
    const allow = checkAllow(address, policy);
    if (allow) {
      const session = new SessionPolicy({ policy, address, trusted: true });
      record('allow', [allow]);
      session.add(allow);
      if (options.needName) session.clientName = (await checkRdns(address, policy.rdns, state.dns)).name;
      verdictsTotal.inc({ verdict: session.verdict });
      return { session, report: { lookups: [], cached: false } };
    }
    const session = new SessionPolicy({ policy, address, trusted: false });
    record('allow', []);

    const group = clientGroup(address, policy.rate.group);
    if (options.count) {
      const slot = state.rates.open(group);
      session.release = slot.release;
      const rate = checkRate(slot.snapshot, policy);
      record('rate', rate ? [rate] : []);
      if (rate) session.add(rate);
    }
    const block = checkBlock(address, policy);
    record('block', block ? [block] : []);
    if (block) session.add(block);

    // A client that passed before skips the costly checks and the hold (postscreen's PASS OLD).
    const cached = state.allowlist.has(address);
    const lookups: ZoneLookup[] = [];
    if (cached) {
      session.add({ check: 'allowlist-cache', weight: 0, reason: 'passed a hold before (allowlist cache)', class: 'allowlisted' });
      if (options.needName) session.clientName = (await checkRdns(address, policy.rdns, state.dns)).name;
    } else {
      const [bl, wl, rdns] = await Promise.all([
        checkDnsZones(address, policy.dnsbl, 'dnsbl', state.dns),
        checkDnsZones(address, policy.dnswl, 'dnswl', state.dns),
        options.needName || policy.rdns.missing > 0 || policy.rdns.unconfirmed > 0 ? checkRdns(address, policy.rdns, state.dns) : undefined,
      ]);
      for (const zones of [bl, wl]) {
        lookups.push(...zones.lookups);
        for (const l of zones.lookups) checksTotal.inc({ check: zones.kind, result: l.result === 'listed' ? 'hit' : l.result === 'not-listed' ? 'miss' : 'error' });
        session.add(zones.evidence);
      }
      if (rdns) {
        record('rdns', rdns.evidence);
        session.add(rdns.evidence);
        session.clientName = rdns.name;
      }
      // Nobody vouched for this client: hold it before it may deliver (DESIGN §2, first contact).
      const vouched = wl.evidence.some((e) => e.weight < 0);
      session.firstContact = policy.firstContact.enabled && !vouched;
      if (session.firstContact) session.add({ check: 'first-contact', weight: 0, reason: 'not seen before: held before it may deliver', class: 'first-contact' });
    }
    verdictsTotal.inc({ verdict: session.held && session.verdict === 'pass' ? 'tarpit' : session.verdict });
    return { session, report: { lookups, cached } };
  }

  /** HELO/EHLO name, checked once per session at the first stage that knows it. */
  helo(session: SessionPolicy, name: string | undefined): boolean {
    if (session.trusted || name === undefined || name === '' || !session.once('helo')) return false;
    const evidence = checkHelo(name, session.address, this.us, session.policy.helo);
    record('helo', evidence);
    return escalate(session, evidence);
  }

  /** Protocol evidence observed by the front door or the hold (pregreet, pipelining, bare LF, non-SMTP). */
  observe(session: SessionPolicy, evidence: Evidence | undefined): boolean {
    if (!evidence || !session.once(evidence.check)) return false;
    record(evidence.check, [evidence]);
    return escalate(session, evidence);
  }

  /** The backend refused a recipient (5xx): a dictionary attack shows as many of these. */
  recipientRejected(session: SessionPolicy, rejectedInSession: number): boolean {
    if (session.trusted) return false;
    const group = clientGroup(session.address, session.policy.rate.group);
    const inWindow = this.state.harvest.add(group);
    const evidence = checkHarvest(rejectedInSession, inWindow, session.policy);
    if (!evidence || !session.once('harvest')) return false;
    record('harvest', [evidence]);
    return escalate(session, evidence);
  }

  /** A held client sat its hold out and behaved: remember it so its retry is relayed at once. */
  survived(session: SessionPolicy): void {
    this.state.allowlist.add(session.address, 'survived the first-contact hold');
  }
}

/** Evidence after the connect stage: a rise in the verdict now is an escalation. */
function escalate(session: SessionPolicy, evidence: Evidence | readonly Evidence[]): boolean {
  const escalated = session.add(evidence);
  if (escalated) escalationsTotal.inc({ verdict: session.verdict });
  return escalated;
}

function record(check: string, evidence: readonly Evidence[]): void {
  checksTotal.inc({ check, result: evidence.some((e) => e.weight !== 0 || e.class === 'allowlisted') ? 'hit' : 'miss' });
}
