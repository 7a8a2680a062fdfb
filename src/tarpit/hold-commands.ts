/**
 * The hold's side of the SMTP dialogue: what a command line gets as a reply,
 * whose delay it waits, and what its 2xx changes (greeted, in a transaction,
 * recipients accepted). It knows nothing of sockets, timers or observers: the
 * session in hold.ts asks it for a plan, holds the reply, and applies the
 * plan's effect once the reply is out.
 */
import { ERRORS } from '../core/errors.js';
import { splitEnhanced, toWire, type Reply } from '../core/reply.js';
import type { Stage } from '../core/stage.js';
import type { TarpitProfile } from '../policy/spec.js';

/** What a held reply does once written with a 2xx code. */
export type Effect = 'banner' | 'helo' | 'mail' | 'rcpt' | 'rset' | undefined;

export interface Plan {
  readonly verb: string;
  readonly arg: string;
  readonly reply: Reply | 'end';
  /** Whose delay the reply waits: undefined answers at once. */
  readonly stage?: Stage;
  readonly effect?: Effect;
  /** A protocol error: counts towards maxErrors. */
  readonly error?: boolean;
  readonly quit?: boolean;
  readonly data?: boolean;
}

const MAX_PATH = 256; // RFC 5321 §4.5.3.1.3
const MAX_DOMAIN = 255; // RFC 5321 §4.5.3.1.2
const ADDRESS = String.raw`\s*(?:<([^<>]*)>|([^\s<>]+))(?:\s+(.*))?$`;
const MAIL_RE = new RegExp(`^FROM:${ADDRESS}`, 'i');
const RCPT_RE = new RegExp(`^TO:${ADDRESS}`, 'i');
const SIZE_RE = /(?:^|\s)SIZE=(\d+)/i;
const NOT_IMPLEMENTED = new Set(['EXPN', 'STARTTLS', 'AUTH', 'BDAT', 'ETRN', 'TURN', 'ATRN', 'XCLIENT', 'XFORWARD']);

/** The fixed replies; those that name us are built by `hostReply`. */
export const R = {
  ok: { code: 250, enhanced: '2.0.0', text: 'Ok' },
  mailOk: { code: 250, enhanced: '2.1.0', text: 'Ok' },
  rcptOk: { code: 250, enhanced: '2.1.5', text: 'Ok' },
  bye: { code: 221, enhanced: '2.0.0', text: 'Bye' },
  vrfy: { code: 252, enhanced: '2.0.0', text: 'Cannot VRFY user, but will accept message and attempt delivery' },
  help: { code: 214, enhanced: '2.0.0', text: 'See RFC 5321' },
  unknown: { code: 500, enhanced: '5.5.2', text: 'Error: command not recognized' },
  tooLong: { code: 500, enhanced: '5.5.2', text: 'Error: line too long' },
  notImplemented: { code: 502, enhanced: '5.5.1', text: 'Error: command not implemented' },
  heloFirst: { code: 503, enhanced: '5.5.1', text: 'Error: send HELO/EHLO first' },
  nestedMail: { code: 503, enhanced: '5.5.1', text: 'Error: nested MAIL command' },
  needMail: { code: 503, enhanced: '5.5.1', text: 'Error: need MAIL command' },
  needRcpt: { code: 503, enhanced: '5.5.1', text: 'Error: need RCPT command' },
  noRcpt: { code: 554, enhanced: '5.5.1', text: 'Error: no valid recipients' },
  tooMany: { code: 452, enhanced: '4.5.3', text: 'Error: too many recipients' },
  tooBig: { code: 552, enhanced: '5.3.4', text: 'Message size exceeds fixed limit' },
  syntaxHelo: { code: 501, enhanced: '5.5.4', text: 'Syntax: EHLO hostname' },
  syntaxMail: { code: 501, enhanced: '5.5.4', text: 'Syntax: MAIL FROM:<address>' },
  syntaxRcpt: { code: 501, enhanced: '5.5.4', text: 'Syntax: RCPT TO:<address>' },
  syntaxData: { code: 501, enhanced: '5.5.4', text: 'Syntax: DATA' },
  badSender: { code: 501, enhanced: '5.1.7', text: 'Bad sender address syntax' },
  badRecipient: { code: 501, enhanced: '5.1.3', text: 'Bad recipient address syntax' },
  internal: ERRORS.TARPIT_ERR_INTERNAL,
} as const satisfies Record<string, Reply>;

/** Replies that carry our hostname. */
export const hostReply = {
  banner: perHost((host) => ({ code: 220, text: `${host} ESMTP` })),
  drop: perHost((host) => ({ code: 421, enhanced: '4.7.0', text: `${host} Service not available, closing transmission channel` })),
  timeout: perHost((host) => ({ code: 421, enhanced: '4.4.2', text: `${host} Error: timeout exceeded` })),
  tooMuchInput: perHost((host) => ({ code: 421, enhanced: '4.7.0', text: `${host} Error: too much input` })),
  tooManyErrors: perHost((host) => ({ code: 421, enhanced: '4.7.0', text: `${host} Error: too many errors` })),
  tooManyCommands: perHost((host) => ({ code: 421, enhanced: '4.7.0', text: `${host} Error: too many commands` })),
};

/**
 * The reply for `host`, built once while the hostname stays the same (it is
 * the config's): a held session keeps its pending reply for the whole wait,
 * and tens of thousands of copies of one banner would be tens of thousands of
 * strings.
 */
function perHost(make: (host: string) => Reply): (host: string) => Reply {
  let host: string | undefined;
  let reply: Reply | undefined;
  return (h) => {
    if (reply === undefined || h !== host) {
      host = h;
      reply = make(h);
    }
    return reply;
  };
}

const EHLO_EXTENSIONS = perHost((host) => ({ code: 250, text: `${host}\n8BITMIME\nSMTPUTF8` }));

/** The reply a survivor gets when no observer answers `onSurvived`: what the profile's end says. */
export function endReply(profile: TarpitProfile): Reply {
  // `relay` reaches here only for a client that was not handed over (it talked, or its verdict rose): told to retry, like `allowlist`.
  if (profile.end.kind !== 'reply') return { code: 451, enhanced: '4.7.1', text: 'Service temporarily unavailable, try again later' };
  const { enhanced, text } = splitEnhanced(profile.end.text);
  return { code: profile.end.code, enhanced, text };
}

/** A profile's delay keys: which wait a reply is held by. */
export type Wait = keyof TarpitProfile['delays'];

/**
 * Bytes of the longest reply each wait can trickle out with stutter, for a
 * hostname of the longest legal length (RFC 5321 §4.5.3.1.2) and any SIZE: the
 * loader checks that delay plus trickle stays within RFC 5321 §4.5.3.2.
 * Closing replies (DATA's end, QUIT, drops) are written whole, so they are not here.
 */
export function longestReply(wait: Wait): number {
  const host = 'x'.repeat(MAX_DOMAIN);
  const ehlo = new HoldDialogue(host, Number.MAX_SAFE_INTEGER, 1).plan('EHLO x').reply;
  const replies: Record<Wait, readonly (Reply | 'end')[]> = {
    banner: [hostReply.banner(host)],
    helo: [ehlo, R.syntaxHelo],
    mail: [R.mailOk, R.heloFirst, R.nestedMail, R.syntaxMail, R.badSender, R.tooBig],
    rcpt: [R.rcptOk, R.needMail, R.syntaxRcpt, R.badRecipient, R.tooMany],
    data: [R.syntaxData, R.needMail, R.noRcpt],
    other: [R.ok, R.vrfy, R.help, R.unknown, R.notImplemented, R.tooLong],
  };
  let longest = 0;
  for (const reply of replies[wait]) if (reply !== 'end') longest = Math.max(longest, toWire(reply).length);
  return longest;
}

export function verbOf(line: string): string {
  const sp = line.indexOf(' ');
  return (sp === -1 ? line : line.slice(0, sp)).toUpperCase();
}

/**
 * One session's dialogue state and envelope. The envelope (HELO name, sender,
 * recipients) is what the summary keeps of the commands, whatever their
 * replies: bounded by MAX_DOMAIN, MAX_PATH and `maxRecipients`.
 */
export class HoldDialogue {
  private greeted = false;
  private inTransaction = false;
  private accepted = 0;
  helo: string | undefined;
  mailFrom: string | undefined;
  rcpts: string[] | undefined;
  rcptCount = 0;

  constructor(
    private readonly hostname: string,
    private readonly sizeLimit: number,
    private readonly maxRecipients: number,
  ) {}

  /** The hold's own answer to a command line, from the dialogue's state. */
  plan(text: string): Plan {
    const verb = verbOf(text);
    const arg = text.slice(verb.length).trim();
    switch (verb) {
      case 'EHLO':
      case 'HELO': {
        if (arg === '') return { verb, arg, reply: R.syntaxHelo, stage: 'helo', error: true };
        const reply: Reply =
          verb === 'EHLO'
            ? // No PIPELINING (a client that pipelines anyway shows itself), no STARTTLS, no AUTH: we take no mail here.
              // SMTPUTF8 and 8BITMIME keep a patient MTA from bouncing or converting a message it would send here; nothing
              // else is said, so the reply stays short enough to stutter at 1 byte/s (OpenBSD spamd's rate) within the
              // 300 s a client waits for it (RFC 5321 §4.5.3.2), whatever our hostname: a held client never sends a body.
              EHLO_EXTENSIONS(this.hostname)
            : { code: 250, text: this.hostname };
        return { verb, arg, reply, stage: 'helo', effect: 'helo' };
      }
      case 'MAIL': {
        if (!this.greeted) return { verb, arg, reply: R.heloFirst, stage: 'mail', error: true };
        if (this.inTransaction) return { verb, arg, reply: R.nestedMail, stage: 'mail', error: true };
        const m = MAIL_RE.exec(arg);
        if (!m) return { verb, arg, reply: R.syntaxMail, stage: 'mail', error: true };
        if ((m[1] ?? m[2] ?? '').length > MAX_PATH) return { verb, arg, reply: R.badSender, stage: 'mail', error: true };
        const size = SIZE_RE.exec(m[3] ?? '');
        if (size && Number(size[1]) > this.sizeLimit) return { verb, arg, reply: R.tooBig, stage: 'mail' };
        return { verb, arg, reply: R.mailOk, stage: 'mail', effect: 'mail' };
      }
      case 'RCPT': {
        if (!this.inTransaction) return { verb, arg, reply: R.needMail, stage: 'rcpt', error: true };
        const m = RCPT_RE.exec(arg);
        const address = m?.[1] ?? m?.[2] ?? '';
        if (address === '') return { verb, arg, reply: R.syntaxRcpt, stage: 'rcpt', error: true };
        if (address.length > MAX_PATH) return { verb, arg, reply: R.badRecipient, stage: 'rcpt', error: true };
        if (this.accepted >= this.maxRecipients) return { verb, arg, reply: R.tooMany, stage: 'rcpt' };
        return { verb, arg, reply: R.rcptOk, stage: 'rcpt', effect: 'rcpt' };
      }
      case 'DATA':
        if (arg !== '') return { verb, arg, reply: R.syntaxData, stage: 'data', error: true };
        if (!this.inTransaction) return { verb, arg, reply: R.needMail, stage: 'data', error: true };
        if (this.accepted === 0) return { verb, arg, reply: R.noRcpt, stage: 'data' };
        return { verb, arg, reply: 'end', stage: 'data', data: true };
      case 'RSET':
        return { verb, arg, reply: R.ok, effect: 'rset' };
      case 'NOOP':
        return { verb, arg, reply: R.ok };
      case 'QUIT':
        return { verb, arg, reply: R.bye, quit: true };
      case 'VRFY':
        return { verb, arg, reply: R.vrfy };
      case 'HELP':
        return { verb, arg, reply: R.help };
      default:
        if (NOT_IMPLEMENTED.has(verb)) return { verb, arg, reply: R.notImplemented, error: true };
        return { verb, arg, reply: R.unknown, error: true };
    }
  }

  /** Keeps the envelope a command names, whatever its reply. */
  record(plan: Plan): void {
    if (plan.verb === 'EHLO' || plan.verb === 'HELO') {
      if (plan.arg !== '') this.helo = plan.arg.split(/\s/, 1)[0]!.slice(0, MAX_DOMAIN);
    } else if (plan.verb === 'MAIL') {
      const m = MAIL_RE.exec(plan.arg);
      if (m) this.mailFrom = (m[1] ?? m[2] ?? '').slice(0, MAX_PATH);
    } else if (plan.verb === 'RCPT') {
      this.rcptCount++;
      const m = RCPT_RE.exec(plan.arg);
      const list = (this.rcpts ??= []);
      if (m && list.length < this.maxRecipients) list.push((m[1] ?? m[2] ?? '').slice(0, MAX_PATH));
    }
  }

  /** The state change a command makes once its 2xx reply is out; returns the stage the session enters, if any. */
  apply(effect: Effect): Stage | undefined {
    switch (effect) {
      case 'banner':
        return 'helo';
      case 'helo':
        this.greeted = true;
        this.inTransaction = false;
        this.accepted = 0;
        return 'mail';
      case 'mail':
        this.inTransaction = true;
        return 'rcpt';
      case 'rcpt':
        this.accepted++;
        return undefined;
      case 'rset':
        this.inTransaction = false;
        this.accepted = 0;
        return this.greeted ? 'mail' : undefined;
      case undefined:
        return undefined;
    }
  }
}
